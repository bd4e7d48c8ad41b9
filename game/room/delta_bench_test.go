package room

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/wire"
)

// fanoutClient is an in-memory client that counts the state bytes handed to
// it, the way the WebSocket writer would send them, and, in delta mode,
// decodes every frame as a delta client would and acknowledges it.
type fanoutClient struct {
	delta bool
	rtt   time.Duration

	bytes, frames int64
	frame         []byte     // newest state frame, shared + tail
	shared        []byte     // newest shared part as handed over
	snap          *wire.Snap // newest reconstructed snapshot
	rx            *wire.DeltaReceiver
	decode        bool
}

func (c *fanoutClient) Send([]byte) error { return nil }
func (c *fanoutClient) SendState(shared, tail []byte) {
	c.bytes += int64(len(shared) + len(tail))
	c.frames++
	c.shared = shared
	if c.decode {
		c.frame = append(append(c.frame[:0], shared...), tail...)
	}
}
func (c *fanoutClient) Close(int, string)                   {}
func (c *fanoutClient) RTT() (time.Duration, time.Duration) { return c.rtt, 0 }
func (c *fanoutClient) WantsDelta() bool                    { return c.delta }

// receive decodes the newest frame into c.snap.
func (c *fanoutClient) receive(tb testing.TB) {
	m, err := wire.DecodeServer(c.frame)
	if err != nil {
		tb.Fatal(err)
	}
	switch m := m.(type) {
	case *wire.Snap:
		c.snap = m
	case *wire.Delta:
		if c.snap, err = c.rx.Apply(m); err != nil {
			tb.Fatal(err)
		}
	}
}

// arena is a room of wandering players driven tick by tick without its
// goroutine, as Run would drive it, with acks that reach the room lag ticks
// after the frame they acknowledge (the round trip); lag -1 gives the
// clients lags of 1 to 4 ticks in turn.
type arena struct {
	r       *Room
	seats   []*Seat
	clients []*fanoutClient
	angles  []float64
	rng     *rand.Rand
	n       uint64
	lags    []int      // per client, ticks between a frame and its ack reaching the room
	sent    [][]uint64 // per client, ticks received, newest last

	tickTime time.Duration // spent in the room's tick
}

func newArena(players, hz int, delta bool, lag int, decode bool) *arena {
	a := &arena{
		r:   New(Config{ID: "bench", Hz: hz, MaxPlayers: players + 8, Game: game.Config{Seed: 7}, Logger: quiet()}),
		rng: rand.New(rand.NewPCG(1, 2)),
	}
	for i := range players {
		l := lag
		if lag < 0 {
			l = 1 + i%4
		}
		a.add(delta, decode, l)
	}
	return a
}

// add seats one more client.
func (a *arena) add(delta, decode bool, lag int) *fanoutClient {
	i := len(a.clients)
	c := &fanoutClient{delta: delta, decode: decode, rtt: time.Duration(20+i) * time.Millisecond}
	c.rx = wire.NewDeltaReceiver(a.r.cfg.Hz)
	s, err := a.r.join(c, fmt.Sprintf("p%d", i))
	if err != nil {
		panic(err)
	}
	a.seats = append(a.seats, s)
	a.clients = append(a.clients, c)
	a.angles = append(a.angles, a.rng.Float64()*2*math.Pi)
	a.sent = append(a.sent, nil)
	a.lags = append(a.lags, lag)
	return c
}

// step runs one tick: every player steers like `tickwire bot` (smooth random
// turns, back toward the middle near a wall), round trips drift as pongs
// come in, and acks of frames received lag ticks ago reach the room.
func (a *arena) step(tb testing.TB) {
	a.n++
	w := a.r.world.Config()
	for i, s := range a.seats {
		a.angles[i] += (a.rng.Float64() - 0.5) * 0.6
		if p := a.r.world.Player(s.ID); p != nil {
			m := 4 * w.Radius
			if p.X < m || p.Y < m || p.X > w.W-m || p.Y > w.H-m {
				a.angles[i] = math.Atan2(w.H/2-p.Y, w.W/2-p.X) + (a.rng.Float64()-0.5)*1.5
			}
		}
		s.Input(wire.Input{Seq: a.n, DX: math.Cos(a.angles[i]), DY: math.Sin(a.angles[i])})
		c := a.clients[i]
		if a.rng.IntN(40*len(a.seats)) < len(a.seats) { // a pong every 2 s at 20 Hz
			c.rtt += time.Duration(a.rng.IntN(7)-3) * time.Millisecond
		}
		if c.delta {
			if k := len(a.sent[i]) - a.lags[i]; k >= 0 && k < len(a.sent[i]) {
				s.AckSnapshot(c, a.sent[i][k])
			}
		}
	}
	t0 := time.Now()
	a.r.tick(a.n, time.Unix(0, 0).Add(time.Duration(a.n)*a.r.dt))
	a.tickTime += time.Since(t0)
	for i, c := range a.clients {
		if c.decode {
			c.receive(tb)
		}
		a.sent[i] = append(a.sent[i], a.n)
		if len(a.sent[i]) > 64 {
			a.sent[i] = a.sent[i][1:]
		}
	}
}

// perClientPerSecond is the mean of the state bytes each client received,
// per second of game time.
func (a *arena) perClientPerSecond() float64 {
	var total int64
	for _, c := range a.clients {
		total += c.bytes
	}
	secs := float64(a.n) / float64(a.r.cfg.Hz)
	return float64(total) / float64(len(a.clients)) / secs
}

// TestDeltaBandwidth16Players20Hz measures the bytes each client of a
// 16-player room at 20 Hz receives per second in both modes, with acks
// that come back one tick later (a LAN) and three ticks later (a 150 ms
// round trip), and checks that delta clients reconstruct every snapshot a
// full client sees.
func TestDeltaBandwidth16Players20Hz(t *testing.T) {
	const ticks = 20 * 60 // one minute of play
	full := newArena(16, 20, false, 0, true)
	lags := []int{1, 3}
	var deltas []*arena
	for _, lag := range lags {
		deltas = append(deltas, newArena(16, 20, true, lag, true))
	}
	// The same players with the same inputs: every arena has the same
	// world at every tick.
	for range ticks {
		full.step(t)
		for i, d := range deltas {
			d.step(t)
			for k := range d.clients {
				if err := sameState(d.clients[k].snap, full.clients[k].snap); err != nil {
					t.Fatalf("acks %d tick(s) late, tick %d, client %d: %v", lags[i], d.n, k, err)
				}
			}
		}
	}
	fullRate := full.perClientPerSecond()
	t.Logf("full snapshots: %.0f B/client/s", fullRate)
	for i, d := range deltas {
		rate := d.perClientPerSecond()
		t.Logf("delta, acks %d tick(s) late: %.0f B/client/s (%.0f%% of full), %d keyframes per client in %d s",
			lags[i], rate, 100*rate/fullRate, d.clients[0].rx.Keyframes(), ticks/20)
		if rate > 3600 {
			t.Errorf("delta mode with acks %d tick(s) late: %.0f B/client/s, want at most 3600", lags[i], rate)
		}
	}
}

// sameState compares a reconstructed snapshot with a full one: ids, scores,
// rtt, orb ids exact, coordinates within the delta precision (plus the
// float32 rounding of the full snapshot).
func sameState(got, want *wire.Snap) error {
	const tol = wire.DeltaPrecision + 1e-3
	if got.N != want.N || got.ST != want.ST || got.Ack != want.Ack {
		return fmt.Errorf("n/st/ack %d/%d/%d, want %d/%d/%d", got.N, got.ST, got.Ack, want.N, want.ST, want.Ack)
	}
	if len(got.P) != len(want.P) || len(got.O) != len(want.O) {
		return fmt.Errorf("%d players %d orbs, want %d and %d", len(got.P), len(got.O), len(want.P), len(want.O))
	}
	for i, g := range got.P {
		w := want.P[i]
		if g.ID != w.ID || g.Score != w.Score || g.RTT != w.RTT ||
			math.Abs(g.X-w.X) > tol || math.Abs(g.Y-w.Y) > tol || math.Abs(g.VX-w.VX) > tol || math.Abs(g.VY-w.VY) > tol {
			return fmt.Errorf("player %+v, want %+v", g, w)
		}
	}
	for i, g := range got.O {
		w := want.O[i]
		if g.ID != w.ID || math.Abs(g.X-w.X) > tol || math.Abs(g.Y-w.Y) > tol {
			return fmt.Errorf("orb %+v, want %+v", g, w)
		}
	}
	return nil
}

// BenchmarkSnapshotFanout is the CPU cost of one tick in both modes, for
// 16 and 64 players at 20 Hz with acks one tick late (delta: one baseline
// per tick), and with acks 1 to 4 ticks late across the clients
// (delta-mixed: four frames to encode per tick). ns/op includes the
// simulated players; tick-ns is the room's tick alone (inputs, world step,
// snapshot, encoding and hand-over to every client). It also reports the
// bytes per client per second.
func BenchmarkSnapshotFanout(b *testing.B) {
	for _, players := range []int{16, 64} {
		for _, mode := range []string{"full", "delta", "delta-mixed"} {
			b.Run(fmt.Sprintf("players=%d/%s", players, mode), func(b *testing.B) {
				lag := 1
				if mode == "delta-mixed" {
					lag = -1
				}
				a := newArena(players, 20, mode != "full", lag, false)
				for range 40 { // past the first keyframes
					a.step(b)
				}
				for _, c := range a.clients {
					c.bytes = 0
				}
				a.tickTime = 0
				start := a.n
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					a.step(b)
				}
				b.StopTimer()
				var total int64
				for _, c := range a.clients {
					total += c.bytes
				}
				ticks := float64(a.n - start)
				b.ReportMetric(float64(a.tickTime.Nanoseconds())/ticks, "tick-ns")
				b.ReportMetric(float64(total)/float64(len(a.clients))/ticks*20, "B/client/s")
			})
		}
	}
}

// TestDeltaFramesAreSharedPerBaseline checks the fan-out: delta clients that
// acknowledged the same snapshot are handed the very same bytes, one
// encoding per distinct baseline, a client with no usable ack gets a
// keyframe, and a full client in the same room still gets `snap`.
func TestDeltaFramesAreSharedPerBaseline(t *testing.T) {
	a := newArena(5, 20, true, 1, true)
	a.add(false, true, 0) // a full client
	for range 10 {
		a.step(t)
	}
	n := a.n
	acks := []uint64{n, n, n - 1, n - 1, n + 50, 0} // the last is the full client
	for i, s := range a.seats {
		s.AckSnapshot(a.clients[i], acks[i])
	}
	a.r.tick(n+1, time.Unix(0, 0).Add(time.Duration(n+1)*a.r.dt))
	a.n++
	c := a.clients
	same := func(x, y []byte) bool { return &x[0] == &y[0] }
	if !same(c[0].shared, c[1].shared) || !same(c[2].shared, c[3].shared) {
		t.Fatal("clients with the same baseline were handed different encodings")
	}
	if same(c[0].shared, c[2].shared) || same(c[0].shared, c[4].shared) || same(c[2].shared, c[4].shared) {
		t.Fatal("clients with different baselines share a frame")
	}
	for i, cl := range c {
		m, err := wire.DecodeServer(cl.frame)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 5:
			if _, ok := m.(*wire.Snap); !ok {
				t.Fatalf("full client got %T", m)
			}
		default:
			d, ok := m.(*wire.Delta)
			if !ok {
				t.Fatalf("delta client %d got %T", i, m)
			}
			var st wire.DeltaState
			err := wire.DecodeDelta(d.D, 20, func(uint64) *wire.DeltaState { return nil }, &st)
			keyframe := err == nil
			if keyframe != (i == 4) {
				t.Fatalf("client %d with ack %d: keyframe %v (%v)", i, acks[i], keyframe, err)
			}
			cl.receive(t)
		}
	}
	// Another client joining gets a keyframe; the others go on with deltas.
	late := a.add(true, true, 1)
	a.step(t)
	if late.rx.Keyframes() != 1 || late.snap.N != a.n || len(late.snap.P) != 7 {
		t.Fatalf("newcomer: %d keyframes, snapshot %+v", late.rx.Keyframes(), late.snap)
	}
}
