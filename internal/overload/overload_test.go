package overload

import (
	"bytes"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sched is the scheduling latency of the windows of a test; calm by default.
type sched struct{ p99 time.Duration }

func (s *sched) read() (time.Duration, bool) { return s.p99, true }

// cpu is the CPU use of the windows of a test; low by default.
type cpu struct{ share float64 }

func (c *cpu) read() (float64, bool) { return c.share, true }

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// feed reports ticks rooms run in one window: n of them, late of which
// started late.
func feed(d *Detector, c *clock, n, late int) {
	const period = 50 * time.Millisecond
	for i := range n {
		lateBy := time.Millisecond
		if i < late {
			lateBy = 40 * time.Millisecond
		}
		d.Tick(lateBy, period, 0)
	}
	c.t = c.t.Add(time.Second)
	d.Tick(0, period, 0) // closes the window
}

func TestDetectorEntersHoldsAndLeaves(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var changes []bool
	d := New(Config{Now: c.now, Sched: (&sched{}).read, CPU: (&cpu{share: 0.3}).read, OnChange: func(over bool, _ Window) { changes = append(changes, over) }})
	feed(d, c, 1000, 50) // 5 % late: fine
	if d.Overloaded() {
		t.Fatal("overloaded at 5 % late ticks")
	}
	feed(d, c, 1000, 150) // 15 %: overloaded
	if !d.Overloaded() {
		t.Fatal("not overloaded at 15 % late ticks")
	}
	for range 3 { // fine again, but held for 5 s
		feed(d, c, 1000, 0)
		if !d.Overloaded() {
			t.Fatal("recovered before the hold")
		}
	}
	feed(d, c, 1000, 0)
	feed(d, c, 1000, 0)
	if d.Overloaded() {
		t.Fatal("still overloaded after 5 quiet seconds")
	}
	if len(changes) != 2 || !changes[0] || changes[1] {
		t.Fatalf("changes told %v, want [true false]", changes)
	}
	if d.RetryAfter() != 5*time.Second {
		t.Fatalf("retry hint %v", d.RetryAfter())
	}
}

// TestRecoversWithoutTicks: a node whose rooms all ended while it was
// overloaded has no tick to judge on; asking it judges instead, on CPU use
// and scheduling latency, so that it takes new rooms again after the hold.
func TestRecoversWithoutTicks(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	u := &cpu{share: 0.3}
	var changes []bool
	d := New(Config{Now: c.now, Sched: (&sched{}).read, CPU: u.read, OnChange: func(over bool, _ Window) { changes = append(changes, over) }})
	feed(d, c, 1000, 150) // 15 % late: overloaded
	if !d.Overloaded() {
		t.Fatal("not overloaded at 15 % late ticks")
	}
	// The rooms are gone; the CPU is busy still (feeds, say), then calm.
	u.share = 0.95
	c.t = c.t.Add(10 * time.Second)
	if !d.Overloaded() {
		t.Fatal("recovered without ticks at 95 % of the CPU")
	}
	u.share = 0.2
	c.t = c.t.Add(2 * time.Second)
	if !d.Overloaded() {
		t.Fatal("recovered within the hold")
	}
	c.t = c.t.Add(5 * time.Second)
	if d.Overloaded() {
		t.Fatal("still overloaded 5 s after the last busy window, with no room left")
	}
	if !slices.Equal(changes, []bool{true, false}) {
		t.Fatalf("changes %v, want overloaded then recovered", changes)
	}
	// Not overloaded, asking judges nothing: the window waits for ticks.
	u.share = 1
	c.t = c.t.Add(5 * time.Second)
	if d.Overloaded() {
		t.Fatal("overloaded without a tick while it was not")
	}
}

func TestSkippedTicksCountAsLate(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now, Sched: (&sched{}).read, CPU: (&cpu{share: 0.3}).read})
	for range 100 {
		d.Tick(time.Millisecond, 50*time.Millisecond, 0)
	}
	d.Tick(0, 50*time.Millisecond, 20) // a stall skipped 20 ticks
	c.t = c.t.Add(time.Second)
	d.Tick(0, 50*time.Millisecond, 0)
	if !d.Overloaded() {
		t.Fatal("skipped ticks did not count")
	}
}

// At a high tick rate half a period is within the jitter of timers: a tick
// counts as late only past MinLate.
func TestLateHasAFloor(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now, Sched: (&sched{}).read, CPU: (&cpu{share: 0.3}).read})
	for range 100 {
		d.Tick(8*time.Millisecond, 10*time.Millisecond, 0) // 0.8 periods at 100 Hz, under 10 ms
	}
	c.t = c.t.Add(time.Second)
	d.Tick(0, 10*time.Millisecond, 0)
	if d.Overloaded() {
		t.Fatal("8 ms of timer jitter at 100 Hz counted as overload")
	}
}

// TestSchedulingLatencyAlone: goroutines that wait to run make the node
// overloaded while every tick is on time; it stays so while they wait
// over half the limit, and leaves after the hold once they do not.
func TestSchedulingLatencyAlone(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	s := &sched{p99: 15 * time.Millisecond}
	var told []Window
	d := New(Config{Now: c.now, Sched: s.read, CPU: (&cpu{share: 0.3}).read, OnChange: func(_ bool, w Window) { told = append(told, w) }})
	feed(d, c, 1000, 0)
	if d.Overloaded() {
		t.Fatal("overloaded at 15 ms, under the 20 ms limit")
	}
	s.p99 = 40 * time.Millisecond
	feed(d, c, 1000, 0)
	if !d.Overloaded() {
		t.Fatal("not overloaded with goroutines waiting 40 ms")
	}
	s.p99 = 12 * time.Millisecond // over half the limit: still struggling
	for range 8 {
		feed(d, c, 1000, 0)
		if !d.Overloaded() {
			t.Fatal("recovered while goroutines wait over half the limit")
		}
	}
	s.p99 = 2 * time.Millisecond
	for range 5 {
		feed(d, c, 1000, 0)
	}
	if d.Overloaded() {
		t.Fatal("still overloaded after 5 calm seconds")
	}
	if len(told) != 2 || told[0].SchedP99 != 40*time.Millisecond || told[0].LateShare != 0 {
		t.Fatalf("windows told %+v", told)
	}
}

// TestCPUUseAlone: a node using more than 90 % of its CPU is overloaded
// with every tick on time and goroutines scheduled at once; it stays so
// down to 85 %, and leaves after the hold under it. A negative limit
// turns the signal off.
func TestCPUUseAlone(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	u := &cpu{share: 0.85}
	d := New(Config{Now: c.now, Sched: (&sched{}).read, CPU: u.read})
	feed(d, c, 1000, 0)
	if d.Overloaded() {
		t.Fatal("overloaded at 85 % of the CPU")
	}
	u.share = 0.93
	feed(d, c, 1000, 0)
	if !d.Overloaded() {
		t.Fatal("not overloaded at 93 % of the CPU")
	}
	u.share = 0.87
	for range 8 {
		feed(d, c, 1000, 0)
		if !d.Overloaded() {
			t.Fatal("recovered at 87 %, within 5 points of the limit")
		}
	}
	u.share = 0.6
	for range 5 {
		feed(d, c, 1000, 0)
	}
	if d.Overloaded() {
		t.Fatal("still overloaded after 5 seconds at 60 %")
	}

	off := New(Config{Now: c.now, Sched: (&sched{}).read, CPU: (&cpu{share: 1}).read, CPULimit: -1})
	feed(off, c, 1000, 0)
	if off.Overloaded() {
		t.Fatal("overloaded by CPU use with the signal off")
	}
}

// TestCPUUseOfTheProcess: what CPUUse reads, while a goroutine spins on
// one P and then while the process sleeps, is the share of the CPU the
// kernel counts for the process in /proc over the same time. On an idle
// machine the spinning share is about 1; on a busy one the system gives the
// thread less, so the test compares with /proc rather than with 1.
func TestCPUUseOfTheProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("compared with /proc")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	u := NewCPUUse()
	measure := func(what string, run func()) float64 {
		cpu, wall := procCPU(t), time.Now()
		run()
		got, ok := u.Share()
		want := float64(procCPU(t)-cpu) / float64(time.Since(wall)) // one P
		t.Logf("%s: %.3f of the CPU, /proc says %.3f", what, got, want)
		// /proc counts in 10 ms clock ticks, over 500 ms.
		if !ok || math.Abs(got-want) > 0.08 {
			t.Fatalf("%s: %.3f of the CPU (known: %t), /proc says %.3f", what, got, ok, want)
		}
		return got
	}
	busy := measure("spinning", func() {
		for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
		}
	})
	idle := measure("sleeping", func() { time.Sleep(500 * time.Millisecond) })
	if idle >= busy {
		t.Fatalf("sleeping: %.3f of the CPU, spinning %.3f", idle, busy)
	}
}

// procCPU returns the user and system CPU time of the process as
// /proc/self/stat counts it, in clock ticks of 10 ms (USER_HZ is 100 on
// Linux).
func procCPU(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields from the third (the state) on, after the command's name.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/self/stat: %s", b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestSchedLatencyOfTheRuntime: with one P and busy goroutines queued
// behind each other, the runtime's latencies read by SchedLatency go up.
func TestSchedLatencyOfTheRuntime(t *testing.T) {
	s := NewSchedLatency()
	time.Sleep(10 * time.Millisecond)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				deadline := time.Now().Add(2 * time.Millisecond)
				for time.Now().Before(deadline) {
				}
				runtime.Gosched()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	p99, n := s.Quantile(0.99)
	// 50 goroutines each running 2 ms in turn: about 100 ms between turns
	// (the runtime samples a share of the events).
	if n < 10 || p99 < 20*time.Millisecond {
		t.Fatalf("p99 %v of %d events, want well over 20 ms", p99, n)
	}
	if _, ok := s.P99(); ok {
		t.Fatal("a window with no events judged")
	}
}
