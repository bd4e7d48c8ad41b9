package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/wire"
)

// watch starts a viewer and closes it when the test ends.
func (ts *testServer) watch(t *testing.T, o spectator.Options) *spectator.Viewer {
	t.Helper()
	o.Server = ts.http.URL
	v, err := spectator.Watch(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// nextEvent returns v's next event of type typ, skipping others.
func nextEvent(t *testing.T, v *spectator.Viewer, typ string) spectator.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-v.Events():
			if !ok {
				t.Fatalf("viewer ended waiting for %s: %v", typ, v.Err())
			}
			if e.Type == typ {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s", typ)
		}
	}
}

func chatText(t *testing.T, e spectator.Event) string {
	t.Helper()
	var c wire.ChatLine
	if err := json.Unmarshal(e.Data, &c); err != nil {
		t.Fatal(err)
	}
	return c.Text
}

func TestSSEHeadersAndStreamStart(t *testing.T) {
	ts := start(t, Config{})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	next[*wire.Snap](t, p)
	resp, err := http.Get(ts.http.URL + "/rooms/" + room + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for h, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	r := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) < 9 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	if lines[0] != "retry: 2000" || lines[1] != "" {
		t.Fatalf("stream opens with %q", lines[:2])
	}
	if !strings.HasPrefix(lines[2], "id: ") || lines[3] != "event: room" || !strings.HasPrefix(lines[4], "data: {") || lines[5] != "" {
		t.Fatalf("first event %q", lines[2:6])
	}
	var info wire.SpectatorRoom
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[4], "data: ")), &info); err != nil ||
		info.ID != room || len(info.Players) != 1 || info.Players[0].Name != "ana" || info.Hz != 30 || info.W <= 0 {
		t.Fatalf("room data %q: %v", lines[4], err)
	}
	if !strings.HasPrefix(lines[6], "id: ") || lines[7] != "event: snap" || !strings.HasPrefix(lines[8], "data: {\"n\":") {
		t.Fatalf("second event %q", lines[6:9])
	}
}

func TestFeedIDsIncreaseAndSnapsAreDecimated(t *testing.T) {
	ts := start(t, Config{Hz: 30, SpectateHz: 10})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	for _, transport := range []string{spectator.SSE, spectator.Poll} {
		v := ts.watch(t, spectator.Options{Room: p.Welcome().Room, Transport: transport, PollTimeout: 5 * time.Second})
		var last uint64
		snaps := 0
		began := time.Now()
		for time.Since(began) < 2*time.Second {
			e := <-v.Events()
			if e.ID <= last && last != 0 {
				t.Fatalf("%s: id %d after %d", transport, e.ID, last)
			}
			last = e.ID
			if e.Type == wire.EventSnap {
				snaps++
			}
			if snaps == 5 {
				_ = p.Chat("tick")
			}
		}
		if snaps < 14 || snaps > 22 {
			t.Errorf("%s: %d snaps in 2s, want about 20 at 10 Hz", transport, snaps)
		}
	}
}

func TestResumeDeliversMissedChatInOrder(t *testing.T) {
	ts := start(t, Config{})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	room := p.Welcome().Room
	for _, c := range []struct{ before, after string }{
		{spectator.SSE, spectator.SSE},
		{spectator.Poll, spectator.Poll},
		{spectator.SSE, spectator.Poll},
		{spectator.Poll, spectator.SSE},
	} {
		t.Run(c.before+"-then-"+c.after, func(t *testing.T) {
			v := ts.watch(t, spectator.Options{Room: room, Transport: c.before})
			nextEvent(t, v, wire.EventSnap)
			last, _ := v.LastID()
			v.Close()
			for i := 1; i <= 5; i++ {
				if err := p.Chat(fmt.Sprintf("%s-%d", c.before, i)); err != nil {
					t.Fatal(err)
				}
				next[*wire.ChatLine](t, p)
			}
			v2 := ts.watch(t, spectator.Options{Room: room, Transport: c.after, Resume: true, LastID: last})
			first := <-v2.Events()
			if first.Type != wire.EventChat || first.ID <= last {
				t.Fatalf("resume began with %s id %d (after %d)", first.Type, first.ID, last)
			}
			got := []string{chatText(t, first)}
			for len(got) < 5 {
				got = append(got, chatText(t, nextEvent(t, v2, wire.EventChat)))
			}
			want := fmt.Sprintf("[%[1]s-1 %[1]s-2 %[1]s-3 %[1]s-4 %[1]s-5]", c.before)
			if fmt.Sprint(got) != want {
				t.Fatalf("resumed chat %v, want %s", got, want)
			}
			nextEvent(t, v2, wire.EventSnap)
		})
	}
}

func TestSSEReconnectsAfterDropAndLosesNothing(t *testing.T) {
	ts := start(t, Config{})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	v := ts.watch(t, spectator.Options{Room: p.Welcome().Room})
	nextEvent(t, v, wire.EventSnap)
	v.Drop()
	dropped := time.Now()
	for i := 1; i <= 3; i++ {
		_ = p.Chat(fmt.Sprint("while away ", i))
	}
	for i := 1; i <= 3; i++ {
		if got := chatText(t, nextEvent(t, v, wire.EventChat)); got != fmt.Sprint("while away ", i) {
			t.Fatalf("chat %d: %q", i, got)
		}
	}
	// The server's `retry: 2000` set the reconnect delay.
	if d := time.Since(dropped); d < 1500*time.Millisecond {
		t.Fatalf("reconnected after %v, before the 2 s retry", d)
	}
	if st := v.Stats(); st.Requests != 2 {
		t.Fatalf("%d requests, want 2", st.Requests)
	}
}

func TestTooOldIDResyncsWithRoom(t *testing.T) {
	// A burst that covers every line, so no wait for the limiter to refill.
	ts := start(t, Config{FeedHistory: 8, ChatBurst: 100})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	room := p.Welcome().Room
	for _, transport := range []string{spectator.SSE, spectator.Poll} {
		v := ts.watch(t, spectator.Options{Room: room, Transport: transport})
		nextEvent(t, v, wire.EventSnap)
		last, _ := v.LastID()
		v.Close()
		for i := 0; i < 12; i++ {
			_ = p.Chat("filler")
			next[*wire.ChatLine](t, p)
		}
		v2 := ts.watch(t, spectator.Options{Room: room, Transport: transport, Resume: true, LastID: last})
		if e := <-v2.Events(); e.Type != wire.EventRoom {
			t.Fatalf("%s: stale id resumed with %s, want room", transport, e.Type)
		}
		if e := <-v2.Events(); e.Type != wire.EventSnap {
			t.Fatalf("%s: resync continued with %s, want snap", transport, e.Type)
		}
	}
}

type pollAnswer struct {
	Events []struct {
		ID   uint64          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"events"`
	Last uint64 `json:"last"`
}

func poll(t *testing.T, url string) (pollAnswer, *http.Response) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a pollAnswer
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
	return a, resp
}

func TestParkedPollWakesOnChatAndTimesOutEmpty(t *testing.T) {
	ts := start(t, Config{})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	base := ts.http.URL + "/rooms/" + p.Welcome().Room + "/poll"
	next[*wire.Snap](t, p)
	first, resp := poll(t, base)
	if resp.Header.Get("Cache-Control") != "no-store" || len(first.Events) != 2 ||
		first.Events[0].Type != wire.EventRoom || first.Events[1].Type != wire.EventSnap || first.Last != first.Events[1].ID {
		t.Fatalf("first poll: %+v %v", first, resp.Header)
	}
	cursor := first.Last
	type result struct {
		a  pollAnswer
		at time.Time
	}
	done := make(chan result, 1)
	go func() {
		for {
			a, _ := poll(t, fmt.Sprintf("%s?after=%d&timeout=20", base, cursor))
			for _, e := range a.Events {
				if e.Type == wire.EventChat {
					done <- result{a, time.Now()}
					return
				}
			}
			cursor = a.Last
		}
	}()
	waitSpectators(t, ts, p.Welcome().Room, 1) // the poll is parked
	sent := time.Now()
	_ = p.Chat("wake up")
	select {
	case r := <-done:
		d := r.at.Sub(sent)
		if d > time.Second {
			t.Fatalf("parked poll answered %v after the chat", d)
		}
		t.Logf("parked poll answered %v after the chat", d)
	case <-time.After(10 * time.Second):
		t.Fatal("parked poll not woken by chat")
	}

	// An idle room's poll answers empty at its timeout, with last = after.
	idle := createRoom(t, ts, `{}`)
	ib := ts.http.URL + "/rooms/" + idle + "/poll"
	a := pollStart(t, ib)
	began := time.Now()
	empty, _ := poll(t, fmt.Sprintf("%s?after=%d&timeout=1", ib, a.Last))
	if d := time.Since(began); d < 900*time.Millisecond || d > 5*time.Second || len(empty.Events) != 0 || empty.Last != a.Last {
		t.Fatalf("idle poll: %+v after %v", empty, d)
	}
	// timeout=0 is clamped up to 1 s, not answered at once.
	began = time.Now()
	poll(t, fmt.Sprintf("%s?after=%d&timeout=0", ib, a.Last))
	if d := time.Since(began); d < 900*time.Millisecond {
		t.Fatalf("timeout=0 answered after %v", d)
	}
}

func TestFeedBadInput(t *testing.T) {
	ts := start(t, Config{RoomIdle: 100 * time.Millisecond})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	ended := createRoom(t, ts, `{}`)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := ts.Lobby().Room(ended); err != nil || time.Now().After(deadline) {
			break
		}
	}
	get := func(path string, header http.Header) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, ts.http.URL+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error.Code
	}
	for _, c := range []struct {
		path   string
		header http.Header
		status int
	}{
		{"/rooms/nope/events", nil, 404},
		{"/rooms/nope/poll", nil, 404},
		{"/rooms/" + ended + "/events", nil, 410},
		{"/rooms/" + ended + "/poll?after=3", nil, 410},
		{"/rooms/" + room + "/poll?after=abc", nil, 400},
		{"/rooms/" + room + "/poll?after=-1", nil, 400},
		{"/rooms/" + room + "/poll?after=", nil, 400},
		{"/rooms/" + room + "/poll?after=1&timeout=soon", nil, 400},
		{"/rooms/" + room + "/events?lastEventId=x", nil, 400},
		{"/rooms/" + room + "/events", http.Header{"Last-Event-Id": {"-5"}}, 400},
	} {
		status, code := get(c.path, c.header)
		if status != c.status || code == "" {
			t.Errorf("GET %s %v: %d %q, want %d with an error code", c.path, c.header, status, code, c.status)
		}
	}
}

func TestRoomEndSendsClosedToViewers(t *testing.T) {
	ts := start(t, Config{RoomIdle: 300 * time.Millisecond})
	room := createRoom(t, ts, `{}`)
	sse := ts.watch(t, spectator.Options{Room: room})
	lp := ts.watch(t, spectator.Options{Room: room, Transport: spectator.Poll})
	for _, v := range []*spectator.Viewer{sse, lp} {
		e := nextEvent(t, v, wire.EventClosed)
		var c wire.SpectatorClosed
		if err := json.Unmarshal(e.Data, &c); err != nil || c.Reason != "idle" {
			t.Fatalf("closed %s", e.Data)
		}
		if _, ok := <-v.Events(); ok {
			t.Fatal("events after closed")
		}
		if v.Err() != nil {
			t.Fatalf("viewer error after a clean close: %v", v.Err())
		}
	}
}

func TestThousandSSEViewersGetTheSameSnapIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	base := runtime.NumGoroutine()
	ts := start(t, Config{})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	room := p.Welcome().Room
	const n = 1000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	ids := make([][]uint64, n)
	ready := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		v, err := spectator.Watch(context.Background(), spectator.Options{Server: ts.http.URL, Room: room, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer v.Close()
			marked, counted := false, false
			for e := range v.Events() {
				switch {
				case e.Type == wire.EventSnap && !marked:
					if !counted {
						ready <- struct{}{}
						counted = true
					}
				case e.Type == wire.EventChat && chatText(t, e) == "start":
					marked = true
				case e.Type == wire.EventChat && chatText(t, e) == "stop":
					return
				case e.Type == wire.EventSnap:
					ids[i] = append(ids[i], e.ID)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d viewers connected", i, n)
		}
	}
	_ = p.Chat("start")
	time.Sleep(time.Second)
	_ = p.Chat("stop")
	wg.Wait()
	want := fmt.Sprint(ids[0])
	if len(ids[0]) < 5 {
		t.Fatalf("viewer 0 saw %d snaps in 1 s", len(ids[0]))
	}
	for i := range ids {
		if got := fmt.Sprint(ids[i]); got != want {
			t.Fatalf("viewer %d saw snaps %s, viewer 0 %s", i, got, want)
		}
	}
	client.CloseIdleConnections()
	for deadline := time.Now().Add(10 * time.Second); ts.Lobby().List()[0].Spectators != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d spectators still counted", ts.Lobby().List()[0].Spectators)
		}
	}
	_ = p.Leave()
	closed(t, p)
	checkGoroutines(t, base+30) // the test server's own goroutines
}

// TestLongParkedPoll covers polls parked past the point where their
// connection is taken over from net/http: they are still woken at once by
// an event, answered empty at their timeout, and keep their CORS headers.
func TestLongParkedPoll(t *testing.T) {
	// Pings only at connect, so that a still player's snapshots stay the
	// same and the room publishes none.
	ts := start(t, Config{Origins: []string{"https://game.example"}, PingEvery: time.Hour})
	room := createRoom(t, ts, `{}`)
	base := ts.http.URL + "/rooms/" + room + "/poll"
	first := pollStart(t, base)
	get := func(query string) (pollAnswer, *http.Response, time.Duration) {
		req, _ := http.NewRequest("GET", base+query, nil)
		req.Header.Set("Origin", "https://game.example")
		began := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a pollAnswer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a, resp, time.Since(began)
	}
	// Empty at its timeout, well after the takeover.
	a, resp, took := get(fmt.Sprintf("?after=%d&timeout=2", first.Last))
	if len(a.Events) != 0 || a.Last != first.Last || took < 1900*time.Millisecond || took > 6*time.Second {
		t.Fatalf("idle poll: %+v after %v", a, took)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://game.example" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("taken-over answer lost its headers: %v", resp.Header)
	}
	// Woken by a chat 1.5 s into the wait.
	p := ts.join(t, "ana", room)
	// Read the feed up to the snap that shows ana: after it the room
	// stands still, so only the chat can wake the next poll.
	last := first.Last
	for deadline := time.Now().Add(10 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no snap shows the new player")
		}
		a, _ := poll(t, fmt.Sprintf("%s?after=%d&timeout=1", base, last))
		last = a.Last
		if showsPlayer(t, p.ID(), a) {
			break
		}
	}
	done := make(chan pollAnswer, 1)
	go func() {
		a, _, _ := get(fmt.Sprintf("?after=%d&timeout=20", last))
		done <- a
	}()
	time.Sleep(1500 * time.Millisecond)
	sent := time.Now()
	_ = p.Chat("late")
	select {
	case a := <-done:
		if len(a.Events) == 0 || a.Events[0].Type != wire.EventChat {
			t.Fatalf("woken poll: %+v", a)
		}
		d := time.Since(sent)
		if d > time.Second {
			t.Fatalf("answered %v after the chat", d)
		}
		t.Logf("taken-over poll answered %v after the chat", d)
	case <-time.After(10 * time.Second):
		t.Fatal("taken-over poll not woken")
	}
	// An SSE stream keeps its CORS headers too.
	req, _ := http.NewRequest("GET", ts.http.URL+"/rooms/"+room+"/events", nil)
	req.Header.Set("Origin", "https://game.example")
	sse, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sse.Body.Close()
	if sse.Header.Get("Access-Control-Allow-Origin") != "https://game.example" || sse.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE headers %v", sse.Header)
	}
}

// showsPlayer reports whether a snap event of a has a row of player id
// in table p.
func showsPlayer(t *testing.T, id uint32, a pollAnswer) bool {
	t.Helper()
	for _, e := range a.Events {
		var tables struct{ P [][]float64 }
		if e.Type != wire.EventSnap {
			continue
		}
		if err := json.Unmarshal(e.Data, &tables); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(tables.P, func(row []float64) bool { return len(row) > 0 && row[0] == float64(id) }) {
			return true
		}
	}
	return false
}

// pollStart polls a feed from the start until the answer holds the room's
// first snapshot (a room just made has none before its first tick).
func pollStart(t *testing.T, base string) pollAnswer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, _ := poll(t, base)
		for _, e := range a.Events {
			if e.Type == wire.EventSnap {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot in the feed after 10 s: %+v", a)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSpectators waits until the room counts at least n viewers (SSE
// streams and parked polls).
func waitSpectators(t *testing.T, ts *testServer, room string, n int) {
	t.Helper()
	r, err := ts.Lobby().Room(room)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Info().Spectators < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d viewers after 10 s, want %d", r.Info().Spectators, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
