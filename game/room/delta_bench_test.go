package room

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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

// sim is a room of a mode's bots driven tick by tick without its
// goroutine, as Run would drive it, with acks that reach the room lag ticks
// after the frame they acknowledge (the round trip); lag -1 gives the
// clients lags of 1 to 4 ticks in turn. Sims made alike run alike: the same
// players make the same inputs, so their rooms hold the same state at
// every tick, whichever snapshots their clients get.
type sim struct {
	r       *Room
	spec    *game.Spec
	seats   []*Seat
	clients []*fanoutClient
	bots    []game.Bot
	field   game.Field
	in      wire.Input
	view    wire.Snap // the room's own state after the newest tick: what bots see
	events  *rand.Rand
	n       uint64
	lags    []int      // per client, ticks between a frame and its ack reaching the room
	sent    [][]uint64 // per client, ticks received, newest last
	jitter  *rand.Rand // when set, each ack comes 0-2 ticks later still
	joined  uint64     // players seated so far

	goneBytes   int64 // state bytes of clients no longer in clients
	clientTicks int64 // ticks summed over the clients present at each

	tickTime time.Duration // spent in the room's tick
}

func newSim(spec *game.Spec, players, hz int, delta bool, lag int, decode bool) *sim {
	a := &sim{
		r:      New(Config{ID: "bench", Hz: hz, MaxPlayers: players + 8, Mode: spec, Seed: 7, Logger: quiet()}),
		spec:   spec,
		field:  spec.Field,
		events: rand.New(rand.NewPCG(1, 2)),
		view:   wire.Snap{Tables: map[string]wire.Rows{}},
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
func (a *sim) add(delta, decode bool, lag int) *fanoutClient {
	c := &fanoutClient{delta: delta, decode: decode, rtt: time.Duration(20+a.joined) * time.Millisecond}
	c.rx = wire.NewDeltaReceiver(a.r.schema, a.r.cfg.Hz)
	s, err := a.r.join(c, fmt.Sprintf("p%d", a.joined))
	if err != nil {
		panic(err)
	}
	a.joined++
	a.seats = append(a.seats, s)
	a.clients = append(a.clients, c)
	a.bots = append(a.bots, a.spec.NewBot(a.joined))
	a.sent = append(a.sent, nil)
	a.lags = append(a.lags, lag)
	return c
}

// churn makes the room's population change as players do: now and then a
// player leaves and another joins, or one loses its connection and resumes
// its seat on a new one (which gets a keyframe). Sims churned alike change
// alike.
func (a *sim) churn() {
	switch k := a.events.IntN(60); {
	case k == 0 && len(a.seats) > 2: // a leave and a join
		i := a.events.IntN(len(a.seats))
		a.goneBytes += a.clients[i].bytes
		a.r.remove(a.seats[i], wire.LeftLeave)
		a.seats = slices.Delete(a.seats, i, i+1)
		a.clients = slices.Delete(a.clients, i, i+1)
		a.bots = slices.Delete(a.bots, i, i+1)
		a.sent = slices.Delete(a.sent, i, i+1)
		lag := a.lags[i]
		a.lags = slices.Delete(a.lags, i, i+1)
		a.add(a.clients[0].delta, a.clients[0].decode, lag)
	case k == 1: // a dropped connection, resumed at once
		i := a.events.IntN(len(a.seats))
		old := a.clients[i]
		a.goneBytes += old.bytes
		a.r.disconnect(a.seats[i], old, wire.LeftDisconnect, a.now())
		c := &fanoutClient{delta: old.delta, decode: old.decode, rtt: old.rtt}
		c.rx = wire.NewDeltaReceiver(a.r.schema, a.r.cfg.Hz)
		if a.r.resume(c, a.seats[i].token) != a.seats[i] {
			panic("resume failed")
		}
		a.clients[i], a.sent[i] = c, nil
	}
}

func (a *sim) now() time.Time { return time.Unix(0, 0).Add(time.Duration(a.n) * a.r.dt) }

// step runs one tick: every bot picks its input from the room's state,
// round trips drift as pongs come in, and acks of frames received lag ticks
// ago reach the room.
func (a *sim) step(tb testing.TB) {
	a.n++
	names := a.r.schema.Input
	for i, s := range a.seats {
		vals := a.bots[i].Input(&a.view, s.ID, a.field)
		a.in.Seq, a.in.Fields = a.n, wire.InputFields{}
		for k, v := range vals {
			a.in.Fields.Set(names[k], v)
		}
		if err := s.Input(&a.in); err != nil {
			tb.Fatal(err)
		}
		c := a.clients[i]
		if a.events.IntN(40*len(a.seats)) < len(a.seats) { // a pong every 2 s at 20 Hz
			c.rtt += time.Duration(a.events.IntN(7)-3) * time.Millisecond
		}
		if c.delta {
			lag := a.lags[i]
			if a.jitter != nil {
				lag += a.jitter.IntN(3)
			}
			if k := len(a.sent[i]) - lag; k >= 0 && k < len(a.sent[i]) {
				s.AckSnapshot(c, a.sent[i][k])
			}
		}
	}
	t0 := time.Now()
	a.r.tick(a.n, a.now())
	a.tickTime += time.Since(t0)
	a.clientTicks += int64(len(a.clients))
	for i, t := range a.r.frame.Tables() {
		rows := a.view.Tables[a.r.schema.Tables[i].Name][:0]
		for k := range t.Len() {
			rows = append(rows, t.Row(k))
		}
		a.view.Tables[a.r.schema.Tables[i].Name] = rows
	}
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
// per second of game time; clients that left or were replaced by a resume
// count for the ticks they were there.
func (a *sim) perClientPerSecond() float64 {
	total := a.goneBytes
	for _, c := range a.clients {
		total += c.bytes
	}
	return float64(total) / float64(a.clientTicks) * float64(a.r.cfg.Hz)
}

// TestDeltaBandwidth16Players20Hz measures, for every shipped mode, the
// bytes each client of a 16-player room at 20 Hz receives per second in
// both modes, with acks that come back one tick later (a LAN), three ticks
// later (a 150 ms round trip), and 1 to 6 ticks later with jitter, and
// checks that delta clients rebuild every snapshot a full client sees over
// 3,000 ticks (1,000 under the race detector) with players leaving, joining
// and resuming.
func TestDeltaBandwidth16Players20Hz(t *testing.T) {
	for _, spec := range shippedModes {
		t.Run(spec.Name, func(t *testing.T) { testDeltaBandwidth(t, spec) })
	}
}

func testDeltaBandwidth(t *testing.T, spec *game.Spec) {
	ticks := 3000
	if raceEnabled {
		ticks = 1000
	}
	full := newSim(spec, 16, 20, false, 0, true)
	lags := []int{1, 3, -1}
	var deltas []*sim
	for i, lag := range lags {
		d := newSim(spec, 16, 20, true, lag, true)
		if i == 2 {
			d.jitter = rand.New(rand.NewPCG(3, 4))
		}
		deltas = append(deltas, d)
	}
	keys := make([]int64, len(deltas))
	for range ticks {
		full.churn()
		full.step(t)
		for i, d := range deltas {
			d.churn()
			d.step(t)
			if len(d.clients) != len(full.clients) {
				t.Fatalf("the sims diverged: %d and %d clients", len(d.clients), len(full.clients))
			}
			for k := range d.clients {
				if err := sameState(spec, d.clients[k].snap, full.clients[k].snap); err != nil {
					t.Fatalf("acks %d tick(s) late, tick %d, client %d: %v", lags[i], d.n, k, err)
				}
			}
		}
	}
	fullRate := full.perClientPerSecond()
	t.Logf("%s, full snapshots: %.0f B/client/s", spec.Name, fullRate)
	for i, d := range deltas {
		for _, c := range d.clients {
			keys[i] += c.rx.Keyframes()
		}
		rate := d.perClientPerSecond()
		late := fmt.Sprint(lags[i])
		if lags[i] < 0 {
			late = "1-6"
		}
		t.Logf("%s, delta, acks %s tick(s) late: %.0f B/client/s (%.0f%% of full), %d keyframes to the last clients in %d s",
			spec.Name, late, rate, 100*rate/fullRate, keys[i], ticks/20)
		if rate > fullRate/2 {
			t.Errorf("delta mode with acks %d tick(s) late: %.0f B/client/s, more than half of full (%.0f)", lags[i], rate, fullRate)
		}
	}
}

// sameState compares a rebuilt snapshot with a full one: the same tables
// with the same ids in the same order, integer columns exact, the others
// within half their step (plus the float32 rounding of the full snapshot).
func sameState(spec *game.Spec, got, want *wire.Snap) error {
	if got.N != want.N || got.ST != want.ST || got.Ack != want.Ack {
		return fmt.Errorf("n/st/ack %d/%d/%d, want %d/%d/%d", got.N, got.ST, got.Ack, want.N, want.ST, want.Ack)
	}
	for _, t := range spec.Tables {
		g, w := got.Table(t.Name), want.Table(t.Name)
		if len(g) != len(w) {
			return fmt.Errorf("table %s: %d rows, want %d", t.Name, len(g), len(w))
		}
		for i := range g {
			for c, col := range t.Columns {
				tol := col.Step/2 + math.Abs(w[i][c])*0x1p-23 + 1e-9
				if col.IsInt() {
					tol = 0
				}
				if math.Abs(g[i][c]-w[i][c]) > tol {
					return fmt.Errorf("table %s row %d column %s: %v, want %v", t.Name, i, col.Name, g[i], w[i])
				}
			}
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
				a := newSim(arenaSpec, players, 20, mode != "full", lag, false)
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
	a := newSim(arenaSpec, 5, 20, true, 1, true)
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
			err := a.r.dcodec.Decode(d.D, func(uint64) *wire.DeltaState { return nil }, &st)
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
	if late.rx.Keyframes() != 1 || late.snap.N != a.n || len(late.snap.Table("p")) != 7 {
		t.Fatalf("newcomer: %d keyframes, snapshot %+v", late.rx.Keyframes(), late.snap)
	}
}
