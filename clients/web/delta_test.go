package web_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickwire/tickwire/internal/server"
	"github.com/tickwire/tickwire/wire"
)

// pageSnap is the page's newest snapshot and its client's counters, read
// from the GameClient itself (velocities and orbs included).
type pageSnap struct {
	N       uint64 `json:"n"`
	ST      int64  `json:"st"`
	Players []struct {
		ID    uint32  `json:"id"`
		X     float64 `json:"x"`
		Y     float64 `json:"y"`
		VX    float64 `json:"vx"`
		VY    float64 `json:"vy"`
		Score int     `json:"score"`
		RTT   int     `json:"rtt"`
	} `json:"players"`
	Orbs []struct {
		ID uint32  `json:"id"`
		X  float64 `json:"x"`
		Y  float64 `json:"y"`
	} `json:"orbs"`
	Stats struct {
		Frames    int `json:"frames"`
		Bytes     int `json:"bytes"`
		Snaps     int `json:"snaps"`
		Deltas    int `json:"deltas"`
		Keyframes int `json:"keyframes"`
	} `json:"stats"`
}

const readPageSnap = `(() => {
	const g = window.tickwire.game, l = g.latest;
	return l && { n: l.n, st: l.st, players: [...l.players.values()].sort((a, b) => a.id - b.id), orbs: l.orbs, stats: g.stats };
})()`

// TestPageInDeltaModeTracksABot opens the game page, which asks for delta
// snapshots by default, while a Go bot circles the arena, and checks that
// at every moment sampled the page's snapshot is the one a Go client
// receiving full snapshots got for the same tick: the same players and orbs,
// scores, round trips and server time, positions and velocities within the
// delta precision, for a fraction of the bytes.
func TestPageInDeltaModeTracksABot(t *testing.T) {
	e := startEnv(t, server.Config{PingEvery: 300 * time.Millisecond})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	drain(bot)
	full := e.join(t, "watcher", room)

	var mu sync.Mutex // guards snaps
	snaps := map[uint64]*wire.Snap{}
	var fullBytes, fullSnaps int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range full.Messages() {
			if s, ok := m.(*wire.Snap); ok {
				mu.Lock()
				snaps[s.N] = s
				mu.Unlock()
			}
		}
	}()
	go func() { // the bot only steers
		for range bot.Messages() {
		}
	}()

	tb := newTab(t)
	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0
	})
	stop := circle(bot, 0)
	defer stop()

	compared, worst := 0, 0.0
	var first, last pageSnap
	moved := 0.0
	var lastX, lastY float64
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(40 * time.Millisecond) {
		p := eval[pageSnap](tb, readPageSnap)
		mu.Lock()
		want := snaps[p.N]
		mu.Unlock()
		if want == nil {
			continue // the Go client has not read that tick yet, or skipped it
		}
		if err := samePageSnap(&p, want, &worst); err != nil {
			t.Fatalf("tick %d: %v", p.N, err)
		}
		for _, pl := range p.Players {
			if pl.ID == bot.ID() {
				if compared > 0 {
					moved += math.Hypot(pl.X-lastX, pl.Y-lastY)
				}
				lastX, lastY = pl.X, pl.Y
			}
		}
		if compared == 0 {
			first = p
		}
		last = p
		compared++
	}
	stop()
	st := full.Stats()
	fullBytes, fullSnaps = st.Bytes, st.Snaps
	full.Close()
	<-done

	if compared < 40 {
		t.Fatalf("only %d samples of the page matched a tick of the Go client", compared)
	}
	if moved < 200 {
		t.Fatalf("the bot moved %.0f units over the samples; it should circle", moved)
	}
	s := last.Stats
	if s.Deltas == 0 || s.Deltas != s.Snaps {
		t.Fatalf("page stats %+v: want every snapshot from a delta frame", s)
	}
	if s.Keyframes < 1 || s.Keyframes > s.Deltas/10 {
		t.Errorf("page got %d keyframes in %d deltas", s.Keyframes, s.Deltas)
	}
	pageRate := float64(s.Bytes-first.Stats.Bytes) / float64(s.Frames-first.Stats.Frames)
	fullRate := float64(fullBytes) / float64(fullSnaps)
	t.Logf("%d samples, largest difference %.5f; page %d snapshots, %d keyframes, about %.0f B per frame; Go client in full mode %.0f B per snapshot",
		compared, worst, s.Snaps, s.Keyframes, pageRate, fullRate)
	if pageRate > fullRate/2 {
		t.Errorf("page receives %.0f B per frame in delta mode, full snapshots are %.0f B", pageRate, fullRate)
	}
}

// samePageSnap compares the page's snapshot with the full one of the same
// tick; coordinates may differ by the delta precision plus the 32-bit float
// rounding of the full snapshot.
func samePageSnap(p *pageSnap, w *wire.Snap, worst *float64) error {
	const tol = wire.DeltaPrecision + 1.3e-4
	near := func(a, b float64) bool {
		d := math.Abs(a - b)
		*worst = max(*worst, d)
		return d <= tol
	}
	if p.ST != w.ST || len(p.Players) != len(w.P) || len(p.Orbs) != len(w.O) {
		return fmt.Errorf("page st %d, %d players, %d orbs; full snap st %d, %d players, %d orbs",
			p.ST, len(p.Players), len(p.Orbs), w.ST, len(w.P), len(w.O))
	}
	for i, g := range p.Players {
		f := w.P[i]
		if g.ID != f.ID || g.Score != f.Score || g.RTT != f.RTT ||
			!near(g.X, f.X) || !near(g.Y, f.Y) || !near(g.VX, f.VX) || !near(g.VY, f.VY) {
			return fmt.Errorf("page has %+v, full snap %+v", g, f)
		}
	}
	for i, g := range p.Orbs {
		f := w.O[i]
		if g.ID != f.ID || !near(g.X, f.X) || !near(g.Y, f.Y) {
			return fmt.Errorf("page has orb %+v, full snap %+v", g, f)
		}
	}
	return nil
}

// TestPageAcksDeltasWithItsInputs checks how the page acknowledges delta
// snapshots: while its player moves (an input every tick) the
// acknowledgements ride on the inputs, and while it stands still they go on
// their own; in both cases the server keeps sending deltas, not keyframes.
func TestPageAcksDeltasWithItsInputs(t *testing.T) {
	e := startEnv(t, server.Config{})
	tb := newTab(t)
	tb.navigate(e.url + "/?room=auto&name=ana")
	tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0
	})
	type stats struct {
		Snaps, Deltas, Keyframes, Acks, InputAcks, Seq int
	}
	read := func() stats {
		return eval[stats](tb, `({...window.tickwire.game.stats, seq: window.tickwire.game.seq})`)
	}
	tb.do(chromedp.Click(chromedp.CSS("#canvas")))
	before := read()
	tb.holdKey('d', 1500*time.Millisecond)
	moving := read()
	time.Sleep(1500 * time.Millisecond)
	still := read()

	inputs, alone := moving.InputAcks-before.InputAcks, moving.Acks-before.Acks
	if inputs < 15 || alone > inputs/2 {
		t.Errorf("while moving: %d acknowledgements inside inputs, %d on their own", inputs, alone)
	}
	if n := still.Acks - moving.Acks; n < 8 {
		t.Errorf("while standing still: %d acknowledgements on their own in 1.5 s", n)
	}
	if still.Deltas != still.Snaps || still.Keyframes > still.Deltas/10 {
		t.Errorf("page stats %+v: want deltas against acknowledged snapshots", still)
	}
	t.Logf("moving: %d acks inside inputs, %d alone; still: %d alone; %+v", inputs, alone, still.Acks-moving.Acks, still)
}
