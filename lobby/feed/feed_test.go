package feed

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

// arenaSchema is the schema of the arena's tables (p and o), which the
// feeds of these tests' rooms carry.
var arenaSchema = func() *wire.Schema {
	spec := arena.Spec()
	if err := spec.Validate(); err != nil {
		panic(err)
	}
	return spec.Schema()
}()

// roomInfo is the starting info of an arena room "r" at 30 Hz with the
// given players.
func roomInfo(players ...wire.PlayerInfo) wire.SpectatorRoom {
	return wire.SpectatorRoom{ID: "r", Hz: 30, W: 100, H: 50, Players: players, Mode: arena.Name, Schema: arenaSchema}
}

// opened opens the room of f, with one viewer watching it.
func opened(f *Feed) {
	f.Opened(roomInfo(wire.PlayerInfo{ID: 1, Name: "ana"}))
	f.addViewer(1)
}

// players returns the arena tables of one tick with players at (x, y) by
// id, and no orbs.
func players(ps ...arena.PlayerRow) []wire.Table {
	tables := wire.NewTables(arenaSchema)
	for _, p := range ps {
		tables[arena.TablePlayers].Add(float64(p.ID), p.X, p.Y, p.VX, p.VY, float64(p.Score), float64(p.RTT))
	}
	return tables
}

// snap offers the feed tick n of a room whose one player moves every tick.
func snap(f *Feed, n uint64) {
	f.Snap(n, int64(n), players(arena.PlayerRow{ID: 1, X: float64(n)}))
}

func chat(f *Feed, text string) { f.Chat(&wire.ChatLine{ID: 1, Name: "ana", Text: text, ST: 1}) }

func types(b Batch) string {
	s := ""
	for _, e := range b.Events {
		s += e.Type + ","
	}
	return s
}

func increasing(t *testing.T, b Batch) {
	t.Helper()
	for i := 1; i < len(b.Events); i++ {
		if b.Events[i].ID <= b.Events[i-1].ID {
			t.Fatalf("ids not increasing: %d after %d (%s)", b.Events[i].ID, b.Events[i-1].ID, types(b))
		}
	}
}

func TestNewViewerGetsRoomThenNewestSnap(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	for n := uint64(1); n <= 9; n++ {
		snap(f, n)
	}
	f.Joined(&wire.Joined{ID: 2, Name: "ben"})
	b := f.Read(-1, Coalesce)
	if types(b) != "room,snap," {
		t.Fatalf("new viewer got %s", types(b))
	}
	increasing(t, b)
	var room wire.SpectatorRoom
	if err := json.Unmarshal(b.Events[0].Data, &room); err != nil || len(room.Players) != 2 || room.W != 100 || room.Hz != 30 {
		t.Fatalf("room event %s: %v", b.Events[0].Data, err)
	}
	var snap wire.SpectatorSnap
	if err := json.Unmarshal(b.Events[1].Data, &snap); err != nil || snap.N != 7 {
		t.Fatalf("snap %s: want the newest published (tick 7 of 1..9 at stride 3)", b.Events[1].Data)
	}
	if p := arena.FindPlayer(&snap, 1); p == nil || p.X != 7 || len(arena.Orbs(&snap)) != 0 {
		t.Fatalf("snap %s: want player 1 at x 7 and no orbs", b.Events[1].Data)
	}
	// The snapshot, stamped anew after the joined event, keeps its bytes.
	if b.Last != b.Events[1].ID {
		t.Fatalf("last %d", b.Last)
	}
	if again := f.Read(-1, Coalesce); again.Events[1] != b.Events[1] {
		t.Fatal("a second new viewer got another snapshot event: not shared")
	}
}

func TestSnapshotsDecimatedToSpectateRate(t *testing.T) {
	f := New(Config{SpectateHz: 10}, nil)
	opened(f) // 30 Hz room: one snapshot every 3 ticks
	published := 0
	var last *Event
	for n := uint64(1); n <= 300; n++ {
		snap(f, n)
		if f.snap != last {
			published++
			last = f.snap
		}
	}
	if published != 100 {
		t.Fatalf("%d snapshots published from 300 ticks at 30 Hz, want 100 at 10 Hz", published)
	}
}

func TestResumeDeliversReliableEventsInOrderThenSnap(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	snap(f, 1)
	start := f.Read(-1, Coalesce)
	for i := 0; i < 5; i++ {
		chat(f, fmt.Sprint("m", i))
		snap(f, uint64(4+3*i))
	}
	f.Left(&wire.Left{ID: 1, Reason: wire.LeftLeave})
	b := f.Read(int64(start.Last), Coalesce)
	if types(b) != "chat,chat,chat,chat,chat,left,snap," {
		t.Fatalf("resume got %s", types(b))
	}
	increasing(t, b)
	for i := 0; i < 5; i++ {
		var c wire.ChatLine
		_ = json.Unmarshal(b.Events[i].Data, &c)
		if c.Text != fmt.Sprint("m", i) {
			t.Fatalf("event %d is %q", i, c.Text)
		}
	}
	// Nothing new: an empty batch whose Last is the cursor, and a Wake
	// that fires on the next event.
	idle := f.Read(int64(b.Last), Coalesce)
	if len(idle.Events) != 0 || idle.Last != b.Last {
		t.Fatalf("idle read %s last %d", types(idle), idle.Last)
	}
	chat(f, "later")
	select {
	case <-idle.Wake:
	default:
		t.Fatal("wake not closed by a new event")
	}
}

func TestStreamGetsEverySnapCoalesceTheNewest(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	snap(f, 1)
	cursor := f.Read(-1, Stream).Last
	snap(f, 4)
	chat(f, "a")
	snap(f, 7)
	snap(f, 10)
	if got := types(f.Read(int64(cursor), Stream)); got != "snap,chat,snap,snap," {
		t.Fatalf("stream read %s", got)
	}
	if got := types(f.Read(int64(cursor), Coalesce)); got != "chat,snap," {
		t.Fatalf("coalesced read %s", got)
	}
	// A streaming viewer more than recentSnaps behind gets only those.
	for n := uint64(13); n < 13+3*2*recentSnaps; n += 3 {
		snap(f, n)
	}
	if b := f.Read(int64(cursor), Stream); len(b.Events) != recentSnaps+1 {
		t.Fatalf("far-behind stream read %s", types(b))
	}
}

func TestStillRoomPublishesNoSnapshots(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	still := players(arena.PlayerRow{ID: 1, X: 5, Y: 5})
	f.Snap(1, 1, still)
	first := f.snap
	for n := uint64(4); n < 100; n += 3 {
		f.Snap(n, int64(n), still)
	}
	if f.snap != first {
		t.Fatal("a room where nothing moves published new snapshots")
	}
	f.Snap(200, 200, players(arena.PlayerRow{ID: 1, X: 6, Y: 5}))
	if f.snap == first {
		t.Fatal("a move was not published")
	}
}

func TestNoViewerNoEncoding(t *testing.T) {
	f := New(Config{}, nil)
	f.Opened(wire.SpectatorRoom{ID: "r", Hz: 30, Mode: arena.Name, Schema: arenaSchema})
	for n := uint64(1); n <= 30; n++ {
		snap(f, n)
	}
	if f.snap != nil || f.nextID != 1 {
		t.Fatal("snapshots were encoded for a room nobody watches")
	}
	// A viewer who comes gets the newest state at once.
	b := f.Read(-1, Stream)
	var s wire.SpectatorSnap
	if types(b) != "room,snap," || json.Unmarshal(b.Events[1].Data, &s) != nil || s.N != 28 {
		t.Fatalf("first viewer got %s %s", types(b), b.Events[len(b.Events)-1].Data)
	}
}

func TestTooOldOrFutureCursorResyncs(t *testing.T) {
	f := New(Config{History: 4}, nil)
	opened(f)
	first := f.Read(-1, Coalesce)
	for i := 0; i < 10; i++ {
		chat(f, "x")
	}
	if got := types(f.Read(int64(first.Last), Coalesce)); got != "room," {
		t.Fatalf("cursor older than the window: %s", got)
	}
	if got := types(f.Read(1<<40, Coalesce)); got != "room," {
		t.Fatalf("cursor from the future: %s", got)
	}
	// A cursor just inside the window is served from history.
	if got := types(f.Read(int64(f.history[0].ID-1), Coalesce)); got != "chat,chat,chat,chat," {
		t.Fatalf("cursor at the window's edge: %s", got)
	}
}

func TestClosedEndsTheFeed(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	b := f.Read(-1, Coalesce)
	f.Closed("idle")
	end := f.Read(int64(b.Last), Coalesce)
	if types(end) != "closed," || !end.Closed {
		t.Fatalf("after close: %s closed=%v", types(end), end.Closed)
	}
	chat(f, "too late")
	snap(f, 100)
	if again := f.Read(int64(end.Last), Coalesce); len(again.Events) != 0 || !again.Closed {
		t.Fatalf("events after closed: %s", types(again))
	}
}

// BenchmarkFanoutPerViewer is the cost of one viewer reading one new event:
// no encoding happens per viewer, only a slice of shared events.
func BenchmarkFanoutPerViewer(b *testing.B) {
	f := New(Config{}, nil)
	opened(f)
	cursor := f.Read(-1, Coalesce).Last
	tables := players(make([]arena.PlayerRow, 16)...)
	for i := range 16 { // ids 1..16
		tables[arena.TablePlayers].Row(i)[0] = float64(i + 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	const viewers = 100
	for i := 0; i < b.N; i += viewers {
		chat(f, "hello")
		for v := 0; v < viewers; v++ {
			_ = f.Read(int64(cursor), Coalesce)
		}
		cursor = f.Read(int64(cursor), Coalesce).Last
		tables[arena.TablePlayers].Row(0)[1] = float64(i) // player 1 moves
		f.Snap(uint64(i*3+3), 0, tables)
	}
}
