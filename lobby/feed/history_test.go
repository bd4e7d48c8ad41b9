package feed

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

// TestStillRoomResumeEndsWithSnap: in a room whose state stands still (no
// snapshot published since the viewer's last one), an SSE resume gets the
// missed chat then the newest snapshot; a live stream and a long-poll,
// which read on, only the chat (they have that state).
func TestStillRoomResumeEndsWithSnap(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	still := players(arena.PlayerRow{ID: 1, X: 5, Y: 5})
	f.Snap(1, 1, still)
	cursor := f.Read(-1, Stream).Last
	chat(f, "a")
	chat(f, "b")
	for n := uint64(4); n < 30; n += 3 {
		f.Snap(n, int64(n), still)
	}
	for _, c := range []struct {
		name string
		b    Batch
		want string
	}{
		{"SSE resume", f.Resume(int64(cursor), Stream), "chat,chat,snap,"},
		{"long-poll", f.Read(int64(cursor), Coalesce), "chat,chat,"},
		{"live stream", f.Read(int64(cursor), Stream), "chat,chat,"},
	} {
		if got := types(c.b); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		increasing(t, c.b)
	}
	// Nothing missed: a resume still ends with the newest snapshot, unless
	// it had it under its current id.
	chatted := f.Read(int64(cursor), Stream).Last
	if got := types(f.Resume(int64(chatted), Stream)); got != "snap," {
		t.Errorf("resume after the last chat: %s, want snap", got)
	}
	newest := f.Resume(int64(cursor), Stream).Last
	if got := f.Resume(int64(newest), Stream); len(got.Events) != 0 || got.Last != newest {
		t.Errorf("resume at the newest snapshot: %s, last %d", types(got), got.Last)
	}
}

// normalLine is a chat line of the largest normal size: 280 ASCII
// characters from a player with a 24-character name.
func normalLine(n int) *wire.ChatLine {
	text := fmt.Sprintf("%06d %s", n, strings.Repeat("a", wire.MaxChatLen-7))
	return &wire.ChatLine{ID: 12345, Name: strings.Repeat("n", wire.MaxNameLen), Text: text, ST: 1700000000000}
}

// longLine280 is a chat line of 280 characters that JSON escapes to six
// bytes each (1,680 bytes of text).
func longLine280(n int) *wire.ChatLine {
	text := fmt.Sprintf("%06d%s", n, strings.Repeat("<", wire.MaxChatLen-6))
	return &wire.ChatLine{ID: 12345, Name: strings.Repeat("n", wire.MaxNameLen), Text: text, ST: 1700000000000}
}

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestHistoryKeepsNormalChatAndCapsBytes: by default a room keeps at least
// 1,000 chat lines of normal size, and no more than about 1 MiB of long
// ones (measured on the heap); a resume from an evicted id starts over.
func TestHistoryKeepsNormalChatAndCapsBytes(t *testing.T) {
	f := New(Config{}, nil)
	opened(f)
	snap(f, 1)
	start := f.Read(-1, Coalesce).Last
	for n := range 1200 {
		f.Chat(normalLine(n))
	}
	// Each line takes two ids: its own and the snapshot's, stamped anew.
	b := f.Read(int64(start)+1+2*199, Coalesce) // after line 199: 1,000 lines ago
	if len(b.Events) != 1000 || b.Events[0].Type != wire.EventChat || !strings.HasPrefix(chatLine(t, string(b.Events[0].Data)), "000200 ") {
		t.Fatalf("resume 1,000 normal lines back: %d events, from %.10s", len(b.Events), b.Events[0].Data)
	}

	before := heapInUse()
	g := New(Config{}, nil)
	opened(g)
	snap(g, 1)
	first := g.Read(-1, Coalesce).Last
	for n := range 2000 {
		g.Chat(longLine280(n))
	}
	held := heapInUse() - before
	cursor := g.Read(-1, Coalesce).Last
	runtime.KeepAlive(g)
	t.Logf("history of long lines: %d KiB on the heap, %d lines", held>>10, len(g.history))
	if held > 1<<20+256<<10 {
		t.Fatalf("a feed of long chat lines holds %d KiB, over its 1 MiB cap", held>>10)
	}
	if got := types(g.Read(int64(first), Coalesce)); got != "room,snap," {
		t.Fatalf("resume from an evicted id: %s, want room,snap", got)
	}
	if got := g.Read(int64(g.history[0].ID-1), Coalesce); len(got.Events) != len(g.history) {
		t.Fatalf("resume from the history's start: %d events", len(got.Events))
	}
	_ = cursor
}

// TestBudgetEvictsOldestAcrossFeeds: feeds sharing a budget keep no more
// than it holds together; the oldest events go first, whichever feed they
// belong to; a feed nobody references gives its bytes back.
func TestBudgetEvictsOldestAcrossFeeds(t *testing.T) {
	budget := NewBudget(160 << 10)
	feeds := make([]*Feed, 3)
	starts := make([]uint64, 3)
	for i := range feeds {
		feeds[i] = New(Config{Budget: budget}, nil)
		opened(feeds[i])
		snap(feeds[i], 1)
		starts[i] = feeds[i].Read(-1, Coalesce).Last
	}
	for i, f := range feeds {
		for n := range 60 { // about 120 KB per feed
			f.Chat(longLine280(i*1000 + n))
		}
	}
	if used := budget.Used(); used > budget.Limit() || used < budget.Limit()-4<<10 {
		t.Fatalf("budget holds %d bytes of %d", used, budget.Limit())
	}
	// The first feed, the oldest, went first: all of it, then part of the
	// second; the third is whole.
	if n := len(feeds[0].history); n != 0 {
		t.Fatalf("oldest feed kept %d lines", n)
	}
	if n := len(feeds[1].history); n == 0 || n == 60 {
		t.Fatalf("second feed kept %d of 60 lines", n)
	}
	if n := len(feeds[2].history); n != 60 {
		t.Fatalf("newest feed kept %d of 60 lines", n)
	}
	if got := types(feeds[0].Read(int64(starts[0]), Coalesce)); got != "room,snap," {
		t.Fatalf("resume in an evicted feed: %s", got)
	}
	if got := feeds[2].Read(int64(starts[2]), Coalesce); len(got.Events) != 60 {
		t.Fatalf("resume in the newest feed: %s", types(got))
	}
	// A new line in the oldest feed evicts the second feed's oldest.
	kept := len(feeds[1].history)
	feeds[0].Chat(longLine280(5000))
	if len(feeds[0].history) != 1 || len(feeds[1].history) >= kept {
		t.Fatalf("after a new line: %d and %d lines", len(feeds[0].history), len(feeds[1].history))
	}
	// Feeds that are gone give their bytes back.
	feeds = nil
	for deadline := time.Now().Add(10 * time.Second); budget.Used() != 0; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("budget still holds %d bytes of collected feeds", budget.Used())
		}
		runtime.GC() // runs the feeds' cleanups
	}
}

// TestClosedFeedWithEvictedHistory: a closed feed whose history the
// budget took still ends a viewer that starts over with `closed`.
func TestClosedFeedWithEvictedHistory(t *testing.T) {
	budget := NewBudget(1)
	f := New(Config{Budget: budget}, nil)
	opened(f)
	cursor := f.Read(-1, Coalesce).Last
	chat(f, "x")
	f.Closed("idle")
	if len(f.history) != 0 {
		t.Fatalf("history of %d events in a budget of 1 byte", len(f.history))
	}
	for _, after := range []int64{-1, int64(cursor)} {
		if b := f.Read(after, Stream); types(b) != "closed," || !b.Closed {
			t.Fatalf("read after %d: %s closed=%v", after, types(b), b.Closed)
		}
	}
}
