package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/lobby"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/wire"
)

// collect reads a viewer's events until it ends.
func collect(t *testing.T, v *spectator.Viewer, within time.Duration) []spectator.Event {
	t.Helper()
	var out []spectator.Event
	timeout := time.After(within)
	for {
		select {
		case e, ok := <-v.Events():
			if !ok {
				if err := v.Err(); err != nil {
					t.Fatalf("viewer: %v", err)
				}
				return out
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("the stream did not end within %v (%d events)", within, len(out))
		}
	}
}

// replayList is the answer of GET /api/replays.
type replayList struct {
	Replays []replay.Summary `json:"replays"`
}

func getReplays(t *testing.T, url string) (int, replayList) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l replayList
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, l
}

// snapOf decodes a snap event.
func snapOf(t *testing.T, e spectator.Event) wire.SpectatorSnap {
	t.Helper()
	var s wire.SpectatorSnap
	if err := json.Unmarshal(e.Data, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// playMatch plays a short match on ts, two players moving and chatting
// then leaving, and returns its room and what a live spectator saw of it
// up to the room's end.
func playMatch(t *testing.T, ts *testServer) (string, []spectator.Event) {
	t.Helper()
	ana := ts.join(t, "ana", "auto")
	room := ana.Welcome().Room
	live := ts.watch(t, spectator.Options{Room: room})
	nextEvent(t, live, wire.EventSnap)
	ben := ts.join(t, "ben", room)
	for i := range 45 {
		_, _ = ana.Input(1, 0.5)
		_, _ = ben.Input(-0.5, float64(i%3-1))
		if i == 10 {
			_ = ana.Chat("hello")
		}
		if i == 30 {
			_ = ben.Chat("hi ana")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = ben.Leave()
	time.Sleep(100 * time.Millisecond)
	_ = ana.Leave()
	liveEvents := collect(t, live, 10*time.Second)
	return room, liveEvents
}

func TestRecordedMatchReplaysOverSSE(t *testing.T) {
	ts := start(t, Config{DataDir: t.TempDir(), RoomIdle: 300 * time.Millisecond})
	room, liveEvents := playMatch(t, ts)

	// The recording ends with the room, and is listed.
	var sum replay.Summary
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, l := getReplays(t, ts.http.URL+"/api/replays")
		if code != http.StatusOK {
			t.Fatalf("GET /api/replays: %d", code)
		}
		if len(l.Replays) == 1 && l.Replays[0].End != 0 {
			sum = l.Replays[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing %+v", l)
		}
	}
	if sum.Room != room || sum.Mode != "arena" || sum.Hz != 30 || sum.Ticks < 30 || sum.End < sum.Start {
		t.Fatalf("listed %+v", sum)
	}

	// The whole replay, fast: every tick, the live viewer's snapshots
	// among them within the precision, the chat lines in order.
	v := ts.watch(t, spectator.Options{Room: room, Replay: &spectator.Replay{Speed: 16}})
	events := collect(t, v, 20*time.Second)
	if events[0].Type != wire.EventRoom || events[len(events)-1].Type != wire.EventClosed ||
		string(events[len(events)-1].Data) != `{"reason":"end-of-replay"}` {
		t.Fatalf("replay from %s to %s %s", events[0].Type, events[len(events)-1].Type, events[len(events)-1].Data)
	}
	var info wire.SpectatorRoom
	if err := json.Unmarshal(events[0].Data, &info); err != nil || info.ID != room || info.Schema == nil {
		t.Fatalf("room %s: %v", events[0].Data, err)
	}
	snaps := map[uint64]wire.SpectatorSnap{}
	var ticks []uint64
	var chats []string
	for i, e := range events {
		if i > 0 && e.ID <= events[i-1].ID {
			t.Fatalf("id %d after %d", e.ID, events[i-1].ID)
		}
		switch e.Type {
		case wire.EventSnap:
			s := snapOf(t, e)
			snaps[s.N] = s
			ticks = append(ticks, s.N)
		case wire.EventChat:
			chats = append(chats, chatText(t, e))
		}
	}
	if uint64(len(ticks)) != sum.Ticks || !slices.IsSorted(ticks) {
		t.Fatalf("%d ticks replayed, %d recorded", len(ticks), sum.Ticks)
	}
	var liveChats []string
	liveSnaps := 0
	for _, e := range liveEvents {
		switch e.Type {
		case wire.EventSnap:
			ls := snapOf(t, e)
			rs, ok := snaps[ls.N]
			if !ok {
				t.Fatalf("tick %d seen live is not replayed", ls.N)
			}
			if err := sameWithin(info.Schema, ls, rs); err != nil {
				t.Fatal(err)
			}
			liveSnaps++
		case wire.EventChat:
			liveChats = append(liveChats, chatText(t, e))
		}
	}
	if liveSnaps < 5 || !slices.Equal(chats, liveChats) || !slices.Equal(chats, []string{"hello", "hi ana"}) {
		t.Fatalf("%d live snapshots; chat replayed %q, live %q", liveSnaps, chats, liveChats)
	}

	// Seeking: from a tick, at half speed, paced at the room's tick rate.
	from := ticks[len(ticks)-16]
	began := time.Now()
	v = ts.watch(t, spectator.Options{Room: room, Replay: &spectator.Replay{From: from, Speed: 0.5}})
	seek := collect(t, v, 20*time.Second)
	took := time.Since(began)
	if seek[0].Type != wire.EventRoom || seek[1].Type != wire.EventSnap || snapOf(t, seek[1]).N != from {
		t.Fatalf("from %d: starts with %s %s", from, seek[0].Type, seek[1].Data)
	}
	want := time.Duration(float64(ticks[len(ticks)-1]-from) / 30 / 0.5 * float64(time.Second))
	if took < want*8/10 || took > want+5*time.Second {
		t.Fatalf("15 ticks at half speed took %v, want about %v", took, want)
	}

	// Resuming after an id: the events after it, no room event.
	mid := events[len(events)/2]
	v = ts.watch(t, spectator.Options{Room: room, Replay: &spectator.Replay{Speed: 16}, Resume: true, LastID: mid.ID})
	rest := collect(t, v, 20*time.Second)
	if len(rest) != len(events)-len(events)/2-1 || rest[0].ID != events[len(events)/2+1].ID {
		t.Fatalf("resumed after %d: %d events from id %d, want %d from %d", mid.ID, len(rest), rest[0].ID,
			len(events)-len(events)/2-1, events[len(events)/2+1].ID)
	}
}

// sameWithin reports whether a replayed snapshot holds the live one's rows
// within the declared precision.
func sameWithin(schema *wire.Schema, live, rep wire.SpectatorSnap) error {
	if live.ST != rep.ST {
		return fmt.Errorf("tick %d: st %d, replayed %d", live.N, live.ST, rep.ST)
	}
	for _, td := range schema.Tables {
		a, b := live.Tables[td.Name], rep.Tables[td.Name]
		if len(a) != len(b) {
			return fmt.Errorf("tick %d table %s: %d rows, replayed %d", live.N, td.Name, len(a), len(b))
		}
		for i := range a {
			for c, col := range td.Columns {
				if math.Abs(a[i][c]-b[i][c]) > col.Step/2+1e-6*math.Max(1, math.Abs(a[i][c])) {
					return fmt.Errorf("tick %d %s row %d %s: %v, replayed %v", live.N, td.Name, i, col.Name, a[i][c], b[i][c])
				}
			}
		}
	}
	return nil
}

func TestReplayRefusals(t *testing.T) {
	ts := start(t, Config{DataDir: t.TempDir()})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	for _, c := range []struct {
		path string
		code int
	}{
		{"/rooms/nosuchroom/replay", http.StatusNotFound},
		{"/rooms/" + room + "/replay?speed=32", http.StatusBadRequest},
		{"/rooms/" + room + "/replay?speed=0.1", http.StatusBadRequest},
		{"/rooms/" + room + "/replay?from=-1", http.StatusBadRequest},
		{"/api/replays?limit=0", http.StatusBadRequest},
		{"/api/replays?before=x", http.StatusBadRequest},
	} {
		resp, err := http.Get(ts.http.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d, want %d", c.path, resp.StatusCode, c.code)
		}
	}
	// A room created with "record":false has no replay.
	resp, err := http.Post(ts.http.URL+"/api/rooms", "application/json", strings.NewReader(`{"record":false}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	v := ts.watch(t, spectator.Options{Room: created.ID, Replay: &spectator.Replay{}})
	<-v.Done()
	var se *spectator.StatusError
	if !errors.As(v.Err(), &se) || se.Status != http.StatusNotFound {
		t.Fatalf("replay of an unrecorded room: %v", v.Err())
	}
	// With auth on, both need a token.
	locked := start(t, Config{DataDir: t.TempDir(), AuthSecret: "secret"})
	for _, path := range []string{"/api/replays", "/rooms/" + room + "/replay"} {
		resp, err := http.Get(locked.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", path, resp.StatusCode)
		}
	}
	// Without a data directory nothing is recorded: the listing is empty.
	plain := start(t, Config{})
	if code, l := getReplays(t, plain.http.URL+"/api/replays"); code != http.StatusOK || len(l.Replays) != 0 {
		t.Fatalf("no recording: %d %+v", code, l)
	}
}

func TestReplayPagesNewestFirst(t *testing.T) {
	ts := start(t, Config{DataDir: t.TempDir(), RoomRate: NoLimit})
	var rooms []string
	for range 3 {
		r, err := ts.Lobby().CreateRoom(lobby.RoomOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, r.ID())
		time.Sleep(50 * time.Millisecond) // its header reaches the disk
	}
	slices.Reverse(rooms)
	var got []string
	url := ts.http.URL + "/api/replays?limit=2"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = got[:0]
		before := ""
		for {
			_, l := getReplays(t, url+before)
			if len(l.Replays) == 0 {
				break
			}
			for _, r := range l.Replays {
				got = append(got, r.Room)
				if r.End != 0 {
					t.Fatalf("a running room's recording has an end: %+v", r)
				}
			}
			before = fmt.Sprintf("&before=%d", l.Replays[len(l.Replays)-1].Start)
		}
		if slices.Equal(got, rooms) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listed %v, want %v", got, rooms)
		}
	}
}

// TestRestartReplaysWhatWasRecorded: a server stopped with its rooms
// running leaves recordings that a new server on the same directory lists
// and plays to the end.
func TestRestartReplaysWhatWasRecorded(t *testing.T) {
	dir := t.TempDir()
	first := New(testConfig(Config{DataDir: dir}))
	r, err := first.Lobby().CreateRoom(lobby.RoomOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ts := start(t, Config{DataDir: dir})
	v := ts.watch(t, spectator.Options{Room: r.ID(), Replay: &spectator.Replay{Speed: 16}})
	events := collect(t, v, 10*time.Second)
	n := 0
	for _, e := range events {
		if e.Type == wire.EventSnap {
			n++
		}
	}
	if n < 30 || events[len(events)-1].Type != wire.EventClosed {
		t.Fatalf("%d ticks replayed after the restart, ending with %s", n, events[len(events)-1].Type)
	}
}

// TestReplayOfARunningRoomGoesOn: a running room's replay catches up with
// what was recorded, then goes on as the room records, with `: ping`
// while it waits.
func TestReplayOfARunningRoomGoesOn(t *testing.T) {
	ts := start(t, Config{DataDir: t.TempDir(), FeedHeartbeat: 100 * time.Millisecond})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	time.Sleep(1200 * time.Millisecond) // a first second on disk
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.http.URL+"/rooms/"+room+"/replay?speed=16", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var pinged bool
	var first, last uint64
	for !pinged || last < first+45 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after ticks %d..%d, pinged %v: %v", first, last, pinged, err)
		}
		switch {
		case line == ": ping\n":
			pinged = true
			if first == 0 {
				first = last
			}
		case strings.HasPrefix(line, `data: {"n":`):
			var s wire.SpectatorSnap
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &s); err != nil {
				t.Fatal(err)
			}
			last = s.N
		}
	}
}
