package room

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// recorder is an in-memory Client that keeps what the room hands it.
type recorder struct {
	mu     sync.Mutex
	states []time.Time // when each state frame was handed over
	frame  []byte      // the newest state frame, shared + tail
	msgs   [][]byte
}

func (c *recorder) Send(msg []byte) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, msg)
	c.mu.Unlock()
	return nil
}

func (c *recorder) SendState(shared, tail []byte) {
	c.mu.Lock()
	c.states = append(c.states, time.Now())
	c.frame = append(append(c.frame[:0], shared...), tail...)
	c.mu.Unlock()
}

func (c *recorder) Close(int, string)                   {}
func (c *recorder) RTT() (time.Duration, time.Duration) { return 3 * time.Millisecond, 0 }

func (c *recorder) stateTimes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.states...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func runRoom(t *testing.T, cfg Config) *Room {
	t.Helper()
	cfg.Logger = quiet()
	r := New(withMode(cfg))
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	t.Cleanup(func() { cancel(); <-r.Done() })
	return r
}

func TestTicksFollowDeadlinesAndSkipAfterStall(t *testing.T) {
	r := runRoom(t, Config{ID: "r", Hz: 50})
	c := &recorder{}
	if _, err := r.Join(context.Background(), c, "ana"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	// Stall the room goroutine for 300 ms (15 ticks at 50 Hz).
	stallEnd := time.Now().Add(300 * time.Millisecond)
	_ = r.do(context.Background(), func() { time.Sleep(time.Until(stallEnd)) })
	time.Sleep(400 * time.Millisecond)

	st := r.Stats()
	if st.Skipped < 10 || st.Skipped > 20 {
		t.Errorf("skipped %d ticks over a 300 ms stall at 50 Hz, want about 15", st.Skipped)
	}
	var burst int
	for _, at := range c.stateTimes() {
		if at.After(stallEnd) && at.Before(stallEnd.Add(50*time.Millisecond)) {
			burst++
		}
	}
	if burst > 4 {
		t.Errorf("%d ticks ran in the 50 ms after the stall: a burst, not a skip", burst)
	}
	if st.LastTick <= 0 || st.MaxTick < st.LastTick {
		t.Errorf("tick durations not measured: %+v", st)
	}
}

func TestScheduleDoesNotDrift(t *testing.T) {
	r := runRoom(t, Config{ID: "r", Hz: 100})
	c := &recorder{}
	if _, err := r.Join(context.Background(), c, "ana"); err != nil {
		t.Fatal(err)
	}
	decode := func() *wire.Snap {
		c.mu.Lock()
		defer c.mu.Unlock()
		m, err := wire.DecodeServer(c.frame)
		if err != nil {
			t.Fatal(err)
		}
		return m.(*wire.Snap)
	}
	time.Sleep(100 * time.Millisecond)
	first, t0 := decode(), time.Now()
	time.Sleep(2 * time.Second)
	last, t1 := decode(), time.Now()
	// Tick numbers follow the wall clock: start + n*dt.
	want := t1.Sub(t0).Seconds() * 100
	if got := float64(last.N - first.N); got < want-10 || got > want+10 {
		t.Errorf("%.0f ticks in %v at 100 Hz, want %.0f", got, t1.Sub(t0), want)
	}
}

// Rooms given phases tick at those fractions of the period, whenever they
// were made: two rooms made together with phases 0.2 and 0.7 tick half a
// period apart.
func TestPhasesPlaceTheTicks(t *testing.T) {
	const hz = 20
	dt := time.Second / hz
	offsets := func(c *recorder) time.Duration {
		var o []time.Duration
		for _, at := range c.stateTimes() {
			o = append(o, time.Duration(at.UnixNano())%dt)
		}
		slices.Sort(o)
		return o[len(o)/2]
	}
	var cs []*recorder
	for _, phase := range []float64{0.2, 0.7} {
		r := runRoom(t, Config{ID: "r", Hz: hz, Phase: phase})
		c := &recorder{}
		if _, err := r.Join(context.Background(), c, "ana"); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	time.Sleep(time.Second)
	for i, want := range []time.Duration{dt / 5, dt * 7 / 10} {
		// The tick sends its snapshot a little after its moment.
		if got := offsets(cs[i]); got < want || got > want+10*time.Millisecond {
			t.Errorf("room %d ticks %v into the period, want about %v", i, got, want)
		}
	}
}

// sink is a Client that does what a connection's outbox does with a state
// frame (keep the shared bytes, copy the tail) and nothing else.
type sink struct {
	mu      sync.Mutex
	state   []byte
	tail    [16]byte
	tailLen int
}

func (s *sink) Send([]byte) error { return nil }
func (s *sink) SendState(shared, tail []byte) {
	s.mu.Lock()
	s.state = shared
	s.tailLen = copy(s.tail[:], tail)
	s.mu.Unlock()
}
func (s *sink) Close(int, string)                   {}
func (s *sink) RTT() (time.Duration, time.Duration) { return 20 * time.Millisecond, 0 }

// benchRoom returns a room with n seated players, driven by the caller.
func benchRoom(b *testing.B, n int) *Room {
	r := New(withMode(Config{ID: "bench", MaxPlayers: n, Logger: quiet()}))
	for i := 0; i < n; i++ {
		if _, err := r.join(&sink{}, fmt.Sprintf("p%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range r.seats {
		_ = s.Input(wire.NewInput(1, s.Inputs(), 0.6, -0.8))
	}
	return r
}

// BenchmarkTick is one whole tick of a room: inputs, step, snapshot
// encoding and fan-out.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{16, 64} {
		b.Run(fmt.Sprintf("players=%d", n), func(b *testing.B) {
			r := benchRoom(b, n)
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.tick(uint64(i), now)
			}
		})
	}
}

// BenchmarkFanout splits a tick's snapshot cost into the shared encoding,
// done once per tick, and the fan-out, done once per player: 64 players
// should cost about 4x the fan-out of 16, with the encoding growing only
// with the snapshot's size.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{16, 64} {
		r := benchRoom(b, n)
		r.tick(1, time.Now())
		b.Run(fmt.Sprintf("encode/players=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r.enc.Shared(uint64(i), 1, r.schema, r.frame.Tables())
			}
		})
		shared := r.enc.Shared(1, 1, r.schema, r.frame.Tables())
		b.Run(fmt.Sprintf("fanout/players=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, s := range r.seats {
					s.client.SendState(shared, r.enc.Ack(s.ack))
				}
			}
		})
	}
}
