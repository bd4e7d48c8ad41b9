package server

import (
	"context"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/natstest"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

// waitReplay waits until ts lists a finished recording of room, and
// returns its listing.
func waitReplay(t *testing.T, ts *testServer, room string) replay.Summary {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, l := getReplays(t, ts.http.URL+"/api/replays")
		if code != http.StatusOK {
			t.Fatalf("GET /api/replays: %d", code)
		}
		for _, s := range l.Replays {
			if s.Room == room && s.End != 0 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lists %+v, not a finished %s", ts.http.URL, l.Replays, room)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReplayOfAStoppedNodePlaysFromTheOthers(t *testing.T) {
	checkNoLeaks(t)
	url := natstest.StartJetStream(t)
	node := func(dir string) *testServer {
		return startNode(t, url, Config{DataDir: dir, RoomIdle: 300 * time.Millisecond,
			DirectoryEvery: 100 * time.Millisecond})
	}
	dirA := t.TempDir()
	a, b, c := node(dirA), node(t.TempDir()), node(t.TempDir())

	// A match on a, watched live there: it ends as its players leave.
	room, liveEvents := playMatch(t, a)
	// Another room still runs on a when it stops.
	cid := a.join(t, "cid", "auto")
	running := cid.Welcome().Room
	keepMoving(t, cid)

	sum := waitReplay(t, a, room)
	onA := collect(t, a.watch(t, spectator.Options{Room: room, Replay: &spectator.Replay{Speed: 16}}), 20*time.Second)
	for _, n := range []*testServer{b, c} {
		if s := waitReplay(t, n, room); s != sum {
			t.Fatalf("%s lists %+v, a %+v", n.http.URL, s, sum)
		}
	}
	time.Sleep(500 * time.Millisecond) // the running room records on

	// a stops for good, its files with it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a.http.Close()
	if err := os.RemoveAll(dirA); err != nil {
		t.Fatal(err)
	}

	var liveChats []string
	var liveTicks []uint64
	for _, e := range liveEvents {
		switch e.Type {
		case wire.EventChat:
			liveChats = append(liveChats, chatText(t, e))
		case wire.EventSnap:
			liveTicks = append(liveTicks, snapOf(t, e).N)
		}
	}
	if len(liveTicks) < 5 || !slices.Equal(liveChats, []string{"hello", "hi ana"}) {
		t.Fatalf("live: %d snapshots, chat %q", len(liveTicks), liveChats)
	}
	for _, n := range []*testServer{b, c} {
		// The ended match: listed as a listed it, played as a played it.
		if s := waitReplay(t, n, room); s != sum {
			t.Fatalf("%s lists %+v once a is gone, a listed %+v", n.http.URL, s, sum)
		}
		got := collect(t, n.watch(t, spectator.Options{Room: room, Replay: &spectator.Replay{Speed: 16}}), 20*time.Second)
		if len(got) != len(onA) {
			t.Fatalf("%s plays %d events, a played %d", n.http.URL, len(got), len(onA))
		}
		for i := range got {
			if got[i].ID != onA[i].ID || got[i].Type != onA[i].Type || string(got[i].Data) != string(onA[i].Data) {
				t.Fatalf("%s event %d: %d %s %s; a: %d %s %s", n.http.URL, i,
					got[i].ID, got[i].Type, got[i].Data, onA[i].ID, onA[i].Type, onA[i].Data)
			}
		}
		if last := got[len(got)-1]; last.Type != wire.EventClosed || string(last.Data) != `{"reason":"end-of-replay"}` {
			t.Fatalf("%s ends with %s %s", n.http.URL, last.Type, last.Data)
		}
		var chats []string
		ticks := map[uint64]bool{}
		for _, e := range got {
			switch e.Type {
			case wire.EventChat:
				chats = append(chats, chatText(t, e))
			case wire.EventSnap:
				ticks[snapOf(t, e).N] = true
			}
		}
		if !slices.Equal(chats, liveChats) || uint64(len(ticks)) != sum.Ticks {
			t.Fatalf("%s: chat %q, live %q; %d ticks, %d recorded", n.http.URL, chats, liveChats, len(ticks), sum.Ticks)
		}
		for _, n := range liveTicks {
			if !ticks[n] {
				t.Fatalf("tick %d seen live is not replayed", n)
			}
		}

		// The room that ran as a stopped: ended there, played to its end.
		rs := waitReplay(t, n, running)
		if rs.Ticks < 15 {
			t.Fatalf("%s lists %+v", n.http.URL, rs)
		}
		events := collect(t, n.watch(t, spectator.Options{Room: running, Replay: &spectator.Replay{Speed: 16}}), 20*time.Second)
		snaps := 0
		for _, e := range events {
			if e.Type == wire.EventSnap {
				snaps++
			}
		}
		if last := events[len(events)-1]; uint64(snaps) != rs.Ticks || last.Type != wire.EventClosed {
			t.Fatalf("%s: %d ticks of %d, then %s", n.http.URL, snaps, rs.Ticks, last.Type)
		}
	}
}
