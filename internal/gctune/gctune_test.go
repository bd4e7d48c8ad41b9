package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	cases := []struct {
		name                 string
		current              int
		share, target        float64
		floor, ceiling, want int
	}{
		{"on target", 100, 0.05, 0.05, 25, 400, 100},
		{"within 30 % above", 100, 0.064, 0.05, 25, 400, 100},
		{"within 30 % below", 100, 0.036, 0.05, 25, 400, 100},
		{"expensive: scaled by share/target", 25, 0.08, 0.05, 25, 400, 40},
		{"very expensive: at most doubled", 25, 0.30, 0.05, 25, 400, 50},
		{"cheap: scaled down", 200, 0.03, 0.05, 25, 400, 120},
		{"idle collector: at most halved", 200, 0, 0.05, 25, 400, 100},
		{"never past the ceiling", 300, 0.5, 0.05, 25, 400, 400},
		{"never under the floor", 40, 0.001, 0.05, 25, 400, 25},
		{"a current outside the bounds is brought in", 1000, 0.05, 0.05, 25, 400, 400},
	}
	for _, c := range cases {
		if got := Next(c.current, c.share, c.target, c.floor, c.ceiling); got != c.want {
			t.Errorf("%s: Next(%d, %v, %v, %d, %d) = %d, want %d", c.name, c.current, c.share, c.target, c.floor, c.ceiling, got, c.want)
		}
	}
}

// gogc reads the collector's current GOGC.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// sink keeps a live heap that the collector has to mark each cycle.
var sink [][]byte

// TestRunRaisesGOGCWhileCollectingIsExpensive runs the tuner against the
// real collector: a goroutine that allocates garbage fast beside a live
// heap of many small objects makes collection a large share of the CPU,
// and GOGC rises; work that allocates nothing, with a cycle now and then
// over a small heap, brings it back to the floor.
func TestRunRaisesGOGCWhileCollectingIsExpensive(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		Run(ctx, Config{Floor: 25, Ceiling: 400, Target: 0.05, Every: 20 * time.Millisecond})
	}()
	defer func() { cancel(); wg.Wait() }()

	sink = make([][]byte, 200_000)
	for i := range sink {
		sink[i] = make([]byte, 64)
	}
	var garbage []byte
	deadline := time.Now().Add(20 * time.Second)
	for gogc() <= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d after 20 s of expensive collection, want it raised past 100 from the floor of 25", gogc())
		}
		for range 1000 {
			garbage = make([]byte, 512)
		}
		runtime.Gosched()
	}
	_ = garbage
	t.Logf("GOGC raised to %d", gogc())

	sink = nil
	runtime.GC()
	deadline = time.Now().Add(20 * time.Second)
	x := 1.0
	for gogc() != 25 {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d after 20 s of cheap collection, want the floor of 25", gogc())
		}
		start := time.Now()
		for time.Since(start) < 30*time.Millisecond {
			for range 1000 {
				x = x*1.0000001 + 1e-9
			}
		}
		runtime.GC()
	}
	_ = x
}
