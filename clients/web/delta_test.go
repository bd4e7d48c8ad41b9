package web_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickwire/tickwire/server"
	"github.com/tickwire/tickwire/wire"
)

// pageSnap is the page's newest snapshot and its client's counters, read
// from the GameClient itself (every table, velocities included).
type pageSnap struct {
	N      uint64               `json:"n"`
	ST     int64                `json:"st"`
	Tables map[string][]pageRow `json:"tables"`
	Stats  struct {
		Frames    int `json:"frames"`
		Bytes     int `json:"bytes"`
		Snaps     int `json:"snaps"`
		Deltas    int `json:"deltas"`
		Keyframes int `json:"keyframes"`
	} `json:"stats"`
}

const readPageSnap = `(() => {
	const g = window.tickwire.game, l = g.latest;
	return l && { n: l.n, st: l.st, tables: l.tables, stats: g.stats };
})()`

// TestPageInDeltaModeTracksABot opens the game page, which asks for delta
// snapshots by default, while a Go bot circles the field (and in shooter
// fires), and checks that at every moment sampled the page's snapshot is
// the one a Go client receiving full snapshots got for the same tick: the
// same tables and rows, the server time, every value within half its
// column's step, for a fraction of the bytes.
func TestPageInDeltaModeTracksABot(t *testing.T) {
	for _, mode := range []string{"arena", "shooter"} {
		t.Run(mode, func(t *testing.T) { testPageInDeltaMode(t, mode) })
	}
}

func testPageInDeltaMode(t *testing.T, mode string) {
	// Pings every second (the rtt column changes): every 300 ms left the
	// bot 900 ms to answer, too little when a loaded machine stalls.
	e := startEnv(t, server.Config{PingEvery: time.Second})
	bot := e.joinMode(t, "bot", "auto", mode)
	room := bot.Welcome().Room
	drain(bot)
	full := e.join(t, "watcher", room)
	schema := full.Schema()

	var mu sync.Mutex // guards snaps and newest
	snaps := map[uint64]*wire.Snap{}
	var newest uint64 // the Go client's newest tick
	var fullBytes, fullSnaps int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range full.Messages() {
			if s, ok := m.(*wire.Snap); ok {
				mu.Lock()
				snaps[s.N] = s
				newest = max(newest, s.N)
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
	// The bot circles; in shooter it also turns its aim and fires all along.
	stop := steerBy(bot, func(d time.Duration) []float64 {
		a := 2 * d.Seconds()
		return []float64{math.Cos(a), math.Sin(a), math.Cos(3 * a), math.Sin(3 * a), 1}
	})
	defer stop()

	compared, worst := 0, 0.0
	rowsSeen := map[string]int{}
	var first, last pageSnap
	moved := 0.0
	var lastX, lastY float64
	// Four seconds of samples, and on (up to 30 s) until 60 have matched a
	// tick of the Go client: a loaded machine answers evaluations slowly.
	// A sample waits until the Go client has read past its tick, which on
	// a loaded machine may come after the page has it.
	compare := func(p pageSnap) {
		mu.Lock()
		want := snaps[p.N]
		mu.Unlock()
		if want == nil {
			return // the Go client skipped that tick
		}
		if err := samePageSnap(schema, &p, want, &worst); err != nil {
			t.Fatalf("tick %d: %v", p.N, err)
		}
		for name, rows := range p.Tables {
			rowsSeen[name] += len(rows)
		}
		if pl := findRow(p.Tables["p"], bot.ID()); pl != nil {
			if compared > 0 {
				moved += math.Hypot(pl["x"]-lastX, pl["y"]-lastY)
			}
			lastX, lastY = pl["x"], pl["y"]
		}
		if compared == 0 {
			first = p
		}
		last = p
		compared++
	}
	var pending []pageSnap
	start := time.Now()
	for ; time.Since(start) < 4*time.Second || compared < 60 && time.Since(start) < 30*time.Second; time.Sleep(40 * time.Millisecond) {
		pending = append(pending, eval[pageSnap](tb, readPageSnap))
		mu.Lock()
		read := newest
		mu.Unlock()
		for len(pending) > 0 && pending[0].N <= read {
			compare(pending[0])
			pending = pending[1:]
		}
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
		t.Fatalf("the bot moved %.0f units over the samples of ticks %d..%d; it should circle (bot's connection: %v)", moved, first.N, last.N, bot.Err())
	}
	for _, tab := range schema.Tables {
		if rowsSeen[tab.Name] == 0 {
			t.Errorf("table %s was empty in every sample", tab.Name)
		}
	}
	s := last.Stats
	if s.Deltas == 0 || s.Deltas != s.Snaps {
		t.Fatalf("page stats %+v: want every snapshot from a delta frame", s)
	}
	// A keyframe comes on join, every 5 s, and when an ack is too old: a
	// browser starved of CPU (tests side by side) acks late, so the bound
	// is loose; most frames must still be deltas against acked snapshots.
	if s.Keyframes < 1 || s.Keyframes > s.Deltas/4 {
		t.Errorf("page got %d keyframes in %d deltas", s.Keyframes, s.Deltas)
	}
	pageRate := float64(s.Bytes-first.Stats.Bytes) / float64(s.Frames-first.Stats.Frames)
	fullRate := float64(fullBytes) / float64(fullSnaps)
	t.Logf("%s: %d samples (rows per table %v), largest difference %.5f; page %d snapshots, %d keyframes, about %.0f B per frame; Go client in full mode %.0f B per snapshot",
		mode, compared, rowsSeen, worst, s.Snaps, s.Keyframes, pageRate, fullRate)
	if pageRate > fullRate/2 {
		t.Errorf("page receives %.0f B per frame in delta mode, full snapshots are %.0f B", pageRate, fullRate)
	}
}

// samePageSnap compares the page's snapshot with the full one of the same
// tick, table by table of the schema: the same rows in the same order,
// integer columns equal, the others within half their step plus the 32-bit
// float rounding of the full snapshot.
func samePageSnap(sc *wire.Schema, p *pageSnap, w *wire.Snap, worst *float64) error {
	if p.ST != w.ST {
		return fmt.Errorf("page st %d, full snap st %d", p.ST, w.ST)
	}
	for _, tab := range sc.Tables {
		got, want := p.Tables[tab.Name], w.Table(tab.Name)
		if len(got) != len(want) {
			return fmt.Errorf("table %s: page has %d rows, full snap %d", tab.Name, len(got), len(want))
		}
		for i, g := range got {
			f := want[i]
			for c, col := range tab.Columns {
				v, ok := g[col.Name]
				d := math.Abs(v - f[c])
				tol := col.Step/2 + 1.3e-4
				if c == 0 || col.IsInt() {
					tol = 0
				} else {
					*worst = max(*worst, d)
				}
				if !ok || d > tol {
					return fmt.Errorf("table %s row %d column %s: page has %v, full snap %v (row %v)", tab.Name, i, col.Name, g, f, f)
				}
			}
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

	// Most inputs carry one (a starved page sends fewer inputs: 13 in the
	// 1.5 s seen beside another make test, against 30).
	inputs, alone, sent := moving.InputAcks-before.InputAcks, moving.Acks-before.Acks, moving.Seq-before.Seq
	if inputs < 5 || inputs < sent/2 || alone > inputs/2 {
		t.Errorf("while moving: %d of %d inputs carried an acknowledgement, %d on their own", inputs, sent, alone)
	}
	// One on its own at least every few deltas: a timer of a tick sends
	// each, about one for two deltas. A busy browser runs it late, and one
	// covers more deltas (5 for 29 beside another make test).
	if n, deltas := still.Acks-moving.Acks, still.Deltas-moving.Deltas; n < 3 || n < deltas/8 {
		t.Errorf("while standing still: %d acknowledgements on their own for %d deltas in 1.5 s", n, deltas)
	}
	if still.Deltas != still.Snaps || still.Keyframes > still.Deltas/4 { // loose: a starved browser acks late
		t.Errorf("page stats %+v: want deltas against acknowledged snapshots", still)
	}
	t.Logf("moving: %d acks inside inputs, %d alone; still: %d alone; %+v", inputs, alone, still.Acks-moving.Acks, still)
}
