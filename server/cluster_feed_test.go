package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/wire"
)

// chatIDs reads v until it has seen n chat events and returns them as
// "id:text".
func chatIDs(t *testing.T, v *spectator.Viewer, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		e := nextEvent(t, v, wire.EventChat)
		got = append(got, fmt.Sprintf("%d:%s", e.ID, chatText(t, e)))
	}
	return got
}

// A viewer on node b watches a room of node a with the ids a's own viewers
// see, and resumes on node c with the chat sent while it was away.
func TestViewersOnAnyNodeWatchARoom(t *testing.T) {
	nodes := startNodes(t, 3, Config{})
	a, b, c := nodes[0], nodes[1], nodes[2]
	p := a.join(t, "ana", createRoom(t, a, `{}`))
	keepMoving(t, p)
	room := p.Welcome().Room
	waitListing(t, b, entries(entry(room, a, 1)), 3*time.Second)
	waitListing(t, c, entries(entry(room, a, 1)), 3*time.Second)

	onA := a.watch(t, spectator.Options{Room: room})
	onB := b.watch(t, spectator.Options{Room: room})
	for _, v := range []*spectator.Viewer{onA, onB} {
		first := <-v.Events()
		if first.Type != wire.EventRoom || !json.Valid(first.Data) {
			t.Fatalf("first event %s %s", first.Type, first.Data)
		}
		nextEvent(t, v, wire.EventSnap)
	}
	// The host counts the viewers of every node among the room's spectators.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rooms := listRooms(t, a)
		if len(rooms) == 1 && rooms[0].Spectators == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a lists %+v, want 2 spectators (one on a, one on b)", rooms)
		}
		time.Sleep(50 * time.Millisecond)
	}
	say := func(lines ...string) {
		for _, l := range lines {
			if err := p.Chat(l); err != nil {
				t.Fatal(err)
			}
			next[*wire.ChatLine](t, p)
		}
	}
	say("hello", "from a")
	want := chatIDs(t, onA, 2)
	if got := chatIDs(t, onB, 2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("viewer on b got %v, viewer on a %v", got, want)
	}
	// Snapshots carry the same ids on both nodes too.
	snapA, snapB := nextEvent(t, onA, wire.EventSnap), nextEvent(t, onB, wire.EventSnap)
	for snapB.ID < snapA.ID {
		snapB = nextEvent(t, onB, wire.EventSnap)
	}
	for snapA.ID < snapB.ID {
		snapA = nextEvent(t, onA, wire.EventSnap)
	}
	if snapA.ID != snapB.ID || string(snapA.Data) != string(snapB.Data) {
		t.Fatalf("snap %d %s on a, %d %s on b", snapA.ID, snapA.Data, snapB.ID, snapB.Data)
	}

	last, _ := onB.LastID()
	onB.Close()
	say("while away 1", "while away 2", "while away 3")
	want = chatIDs(t, onA, 3)
	for _, tr := range []string{spectator.SSE, spectator.Poll} {
		onC := c.watch(t, spectator.Options{Room: room, Transport: tr, Resume: true, LastID: last})
		first := <-onC.Events()
		if first.Type != wire.EventChat || first.ID <= last {
			t.Fatalf("%s resume on c began with %s %d (after %d)", tr, first.Type, first.ID, last)
		}
		got := append([]string{fmt.Sprintf("%d:%s", first.ID, chatText(t, first))}, chatIDs(t, onC, 2)...)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s resume on c got %v, want %v", tr, got, want)
		}
		nextEvent(t, onC, wire.EventSnap)
		onC.Close()
	}

	// The room ends on a: viewers elsewhere get `closed`, then 410.
	onB = b.watch(t, spectator.Options{Room: room})
	nextEvent(t, onB, wire.EventSnap)
	a.Server.Lobby().Drain() // no new players
	if err := p.Leave(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*spectator.Viewer{onA, onB} {
		_ = nextEvent(t, v, wire.EventLeft)
	}
	_ = a.Server.lobby.Shutdown(t.Context())
	for _, v := range []*spectator.Viewer{onA, onB} {
		e := nextEvent(t, v, wire.EventClosed)
		if string(e.Data) != `{"reason":"shutdown"}` {
			t.Fatalf("closed %s", e.Data)
		}
	}
	resp, err := http.Get(b.http.URL + "/rooms/" + room + "/poll")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("poll on b after the room ended: %d, want 410", resp.StatusCode)
	}
}

// When the node hosting a room dies, viewers on other nodes get `closed`
// with reason node-lost within a few seconds.
func TestViewersElsewhereSeeTheirRoomsNodeDie(t *testing.T) {
	nodes := startNodes(t, 2, Config{DirectoryEvery: time.Second})
	a, b := nodes[0], nodes[1]
	p := a.join(t, "ana", createRoom(t, a, `{}`))
	keepMoving(t, p)
	room := p.Welcome().Room
	waitListing(t, b, entries(entry(room, a, 1)), 3*time.Second)
	v := b.watch(t, spectator.Options{Room: room, Transport: spectator.Poll})
	nextEvent(t, v, wire.EventSnap)

	a.bus.(*bus.NATS).Conn().Close() // a is cut off without a word
	cut := time.Now()
	e := nextEvent(t, v, wire.EventClosed)
	if want := `{"reason":"` + feed.ReasonNodeLost + `"}`; string(e.Data) != want {
		t.Fatalf("closed %s, want %s", e.Data, want)
	}
	if d := time.Since(cut); d > 8*time.Second {
		t.Fatalf("closed %v after the node died", d)
	}
	select {
	case <-v.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("viewer did not end after closed")
	}
	var se *spectator.StatusError
	if err := v.Err(); err != nil && !errors.As(err, &se) {
		t.Fatalf("viewer ended with %v", err)
	}
}
