package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/wire"
)

// arrival is a feed event and when a viewer received it.
type arrival struct {
	spectator.Event
	at time.Time
}

// recorder keeps every event a viewer receives, with its arrival time.
type recorder struct {
	mu     sync.Mutex
	events []arrival
	done   chan struct{}
}

// record reads v's events until v ends.
func record(v *spectator.Viewer) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for e := range v.Events() {
			at := time.Now()
			r.mu.Lock()
			r.events = append(r.events, arrival{e, at})
			r.mu.Unlock()
		}
	}()
	return r
}

// list returns the events received so far.
func (r *recorder) list() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// serverTime returns the `st` (server time, Unix ms) of a snap or chat
// event, or false.
func serverTime(e spectator.Event) (int64, bool) {
	if e.Type != wire.EventSnap && e.Type != wire.EventChat {
		return 0, false
	}
	var v struct {
		ST int64 `json:"st"`
	}
	if json.Unmarshal(e.Data, &v) != nil || v.ST == 0 {
		return 0, false
	}
	return v.ST, true
}

// Timing bounds of the delayed feeds' tests. A delayed event is applied S
// after the live feed published it and then written as a live one is, so
// its delay behind its live twin is S plus the difference of two delivery
// latencies, a few milliseconds on an idle machine. The median is held to
// the contract's ±0.2 s; single events may be held up longer by a loaded
// machine (the race detector, two cores shared with other tests), so the
// latest may be up to maxLate after S. A delayed event may arrive up to
// liveLag less than S after its live twin, only because the live twin
// itself took that long to reach its viewer: against the server's clock
// (`st`) no delayed event ever arrives less than S after it happened.
const (
	medianSlack = 200 * time.Millisecond
	maxLate     = time.Second
	liveLag     = 50 * time.Millisecond
)

// checkDelayed checks the delayed events against the live ones: each
// (the start of the delayed stream, `room` and its first `snap`, aside)
// is a live event, same id, type and data, received delay after its twin
// (see the bounds above), never before its server time plus delay; with
// all, every live event in the span of the delayed ones is among them.
func checkDelayed(t *testing.T, live, delayed []arrival, delay time.Duration, all bool) {
	t.Helper()
	byID := make(map[uint64]arrival, len(live))
	for _, e := range live {
		byID[e.ID] = e
	}
	if len(delayed) < 10 {
		t.Fatalf("only %d delayed events", len(delayed))
	}
	if delayed[0].Type != wire.EventRoom {
		t.Fatalf("delayed feed starts with %s", delayed[0].Type)
	}
	var lates []time.Duration
	for i, d := range delayed {
		if st, ok := serverTime(d.Event); ok && d.at.UnixMilli() < st+delay.Milliseconds() {
			t.Errorf("delayed %s %d received %d ms after it happened", d.Type, d.ID, d.at.UnixMilli()-st)
		}
		if i < 2 {
			continue // the stream's start: the state of the moment the delay line started
		}
		l, ok := byID[d.ID]
		if !ok {
			l, ok = restamped(live, byID, d.Event)
		}
		if !ok {
			t.Fatalf("delayed %s %d: no live event with that id", d.Type, d.ID)
		}
		if l.Type != d.Type || string(l.Data) != string(d.Data) {
			t.Fatalf("delayed event %d is %s %s, live %s %s", d.ID, d.Type, d.Data, l.Type, l.Data)
		}
		late := d.at.Sub(l.at)
		if late < delay-liveLag {
			t.Errorf("delayed %s %d received %v after its live twin, want >= %v", d.Type, d.ID, late, delay)
		}
		lates = append(lates, late)
	}
	slices.Sort(lates)
	median, latest := lates[len(lates)/2], lates[len(lates)-1]
	t.Logf("%d delayed events: %v after their live twins: min %v, median %v, max %v",
		len(lates), delay, lates[0], median, latest)
	if median < delay-medianSlack || median > delay+medianSlack {
		t.Errorf("median delay %v, want %v ± %v", median, delay, medianSlack)
	}
	if latest > delay+maxLate {
		t.Errorf("latest delayed event %v after its live twin, want <= %v", latest, delay+maxLate)
	}
	if !all {
		return
	}
	first, last := delayed[2].ID, delayed[len(delayed)-1].ID
	var want, got []string
	for _, e := range live {
		if e.ID >= first && e.ID <= last {
			want = append(want, fmt.Sprint(e.ID, e.Type))
		}
	}
	for _, e := range delayed[2:] {
		got = append(got, fmt.Sprint(e.ID, e.Type))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delayed events %v,\nlive events of that span %v", got, want)
	}
}

// restamped finds the live twin of a snapshot that a long-poll got under
// the id the feed gave it anew after a reliable event (a streaming SSE
// viewer is never sent that id): the live snapshot it repeats, received
// when that reliable event was.
func restamped(live []arrival, byID map[uint64]arrival, e spectator.Event) (arrival, bool) {
	reliable, ok := byID[e.ID-1]
	if e.Type != wire.EventSnap || !ok || reliable.Type == wire.EventSnap || reliable.Type == wire.EventRoom {
		return arrival{}, false
	}
	var last *arrival
	for i := range live {
		if live[i].Type == wire.EventSnap && live[i].ID < e.ID {
			last = &live[i]
		}
	}
	if last == nil {
		return arrival{}, false
	}
	twin := *last
	twin.ID, twin.at = e.ID, reliable.at
	return twin, true
}

// chatTexts returns the texts of the chat events.
func chatTexts(t *testing.T, events []arrival) []string {
	t.Helper()
	var texts []string
	for _, e := range events {
		if e.Type == wire.EventChat {
			texts = append(texts, chatText(t, e.Event))
		}
	}
	return texts
}

// ready waits until the server runs n delay lines and, when live is
// set, live has received its first event, so that what happens next is
// seen by every viewer.
func ready(t *testing.T, ts *testServer, n int64, live *recorder) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ts.feeds.Stats().DelayLines < n || live != nil && len(live.list()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the viewers did not start")
		}
	}
}

// playDelayed runs a room where a player moves, another chats every
// 250 ms and a third comes and goes, for about d, and returns the chat
// lines sent.
func playDelayed(t *testing.T, ts *testServer, room string, d time.Duration) []string {
	t.Helper()
	chatter := ts.join(t, "bo", room)
	var sent []string
	began := time.Now()
	var guest interface{ Leave() error }
	for i := 0; time.Since(began) < d; i++ {
		text := fmt.Sprint("line ", i)
		if err := chatter.Chat(text); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, text)
		switch {
		case guest == nil && time.Since(began) > d/4:
			guest = ts.join(t, "cy", room)
		case guest != nil && time.Since(began) > d/2:
			_ = guest.Leave()
			guest = nopLeaver{}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return sent
}

type nopLeaver struct{}

func (nopLeaver) Leave() error { return nil }

// TestDelayedFeedSSE watches a room live and 2 s late over SSE: the
// delayed viewer gets the live events, same ids, types and data, each 2 s
// after its live twin, and its first event no sooner than 2 s after it
// connected.
func TestDelayedFeedSSE(t *testing.T) {
	const delay = 2 * time.Second
	ts := start(t, Config{Hz: 30, SpectateHz: 10})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	keepMoving(t, p)
	next[*wire.Snap](t, p)
	connected := time.Now()
	delayedView := ts.watch(t, spectator.Options{Room: room, Delay: delay})
	liveView := ts.watch(t, spectator.Options{Room: room})
	live, delayed := record(liveView), record(delayedView)
	ready(t, ts, 1, live)
	sent := playDelayed(t, ts, room, 5*time.Second)
	time.Sleep(delay + 500*time.Millisecond)
	le, de := live.list(), delayed.list()
	if first := de[0].at.Sub(connected); first < delay {
		t.Errorf("first delayed event %v after connecting, want >= %v", first, delay)
	}
	checkDelayed(t, le, de, delay, true)
	if got := chatTexts(t, de); !slices.Equal(got, sent) {
		t.Errorf("delayed chat %q, sent %q", got, sent)
	}
	types := map[string]int{}
	for _, e := range de {
		types[e.Type]++
	}
	if types[wire.EventJoined] != 2 || types[wire.EventLeft] != 1 || types[wire.EventSnap] < 30 {
		t.Errorf("delayed events by type %v, want 2 joined, 1 left and snaps", types)
	}
}

// TestDelayedFeedPoll is TestDelayedFeedSSE over long-poll: snapshots
// are coalesced as on the live long-poll, every other event comes.
func TestDelayedFeedPoll(t *testing.T) {
	const delay = 2 * time.Second
	ts := start(t, Config{Hz: 30, SpectateHz: 10})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	keepMoving(t, p)
	next[*wire.Snap](t, p)
	delayedView := ts.watch(t, spectator.Options{Room: room, Delay: delay, Transport: spectator.Poll, PollTimeout: 5 * time.Second})
	liveView := ts.watch(t, spectator.Options{Room: room})
	live, delayed := record(liveView), record(delayedView)
	ready(t, ts, 1, live)
	sent := playDelayed(t, ts, room, 5*time.Second)
	time.Sleep(delay + 500*time.Millisecond)
	le, de := live.list(), delayed.list()
	checkDelayed(t, le, de, delay, false)
	if got := chatTexts(t, de); !slices.Equal(got, sent) {
		t.Errorf("delayed chat %q, sent %q", got, sent)
	}
	// Every reliable event of the delayed span, in order.
	var want, got []uint64
	for _, e := range le {
		if e.Type != wire.EventSnap && e.Type != wire.EventRoom && e.ID > de[1].ID && e.ID <= de[len(de)-1].ID {
			want = append(want, e.ID)
		}
	}
	for _, e := range de[2:] {
		if e.Type != wire.EventSnap {
			got = append(got, e.ID)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("delayed reliable events %v, live %v", got, want)
	}
}

// TestDelayedFeedBadDelay checks that a delay out of 0..600 whole seconds
// is refused with 400 `bad-request`, and that delay=0 is the live feed.
func TestDelayedFeedBadDelay(t *testing.T) {
	ts := start(t, Config{})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	next[*wire.Snap](t, p)
	for _, path := range []string{"/events", "/poll"} {
		for _, d := range []string{"601", "-1", "x", "1.5", "", "99999999999999999999"} {
			resp, err := http.Get(ts.http.URL + "/rooms/" + room + path + "?delay=" + d)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = json.Unmarshal(raw, &body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), `"bad-request"`) {
				t.Errorf("%s?delay=%s: %d %s", path, d, resp.StatusCode, raw)
			}
		}
	}
	// delay=0: the live feed, `room` and `snap` at once.
	resp, err := http.Get(ts.http.URL + "/rooms/" + room + "/poll?delay=0")
	if err != nil {
		t.Fatal(err)
	}
	var a struct {
		Events []struct{ Type string } `json:"events"`
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if err != nil || len(a.Events) != 2 || a.Events[0].Type != wire.EventRoom || a.Events[1].Type != wire.EventSnap {
		t.Fatalf("poll?delay=0: %+v, %v", a, err)
	}
	// An unknown room is 404 with a delay too.
	if resp, err := http.Get(ts.http.URL + "/rooms/nosuchroom/events?delay=5"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown room with a delay: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestDelayedFeedResume drops a delayed SSE stream: the viewer resumes
// with Last-Event-ID and goes on from where it was, still delayed, with
// no chat line lost or repeated.
func TestDelayedFeedResume(t *testing.T) {
	const delay = 2 * time.Second
	ts := start(t, Config{Hz: 30, SpectateHz: 10})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	keepMoving(t, p)
	next[*wire.Snap](t, p)
	delayedView := ts.watch(t, spectator.Options{Room: room, Delay: delay})
	delayed := record(delayedView)
	ready(t, ts, 1, nil)
	var sent []string
	var dropped time.Time
	var beforeDrop int
	for i := 0; i < 40; i++ {
		text := fmt.Sprint("line ", i)
		if err := p.Chat(text); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, text)
		if i == 16 { // 4 s in: the delayed viewer has had a few lines
			beforeDrop = len(delayed.list())
			dropped = time.Now()
			delayedView.Drop()
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(delay + 500*time.Millisecond)
	de := delayed.list()
	if got := chatTexts(t, de); !slices.Equal(got, sent) {
		t.Fatalf("delayed chat %q, sent %q", got, sent)
	}
	rooms := 0
	for i, e := range de {
		if e.Type == wire.EventRoom {
			rooms++
		}
		if i > 0 && e.ID <= de[i-1].ID {
			t.Errorf("event %d (%s) after %d", e.ID, e.Type, de[i-1].ID)
		}
		if st, ok := serverTime(e.Event); ok && e.at.UnixMilli() < st+delay.Milliseconds() {
			t.Errorf("delayed %s %d received %d ms after it happened", e.Type, e.ID, e.at.UnixMilli()-st)
		}
	}
	if rooms != 1 {
		t.Errorf("%d room events: the resume started over", rooms)
	}
	if len(de) <= beforeDrop || !de[beforeDrop].at.After(dropped) {
		t.Fatalf("no events after the drop")
	}
	if st := delayedView.Stats(); st.Requests < 2 {
		t.Fatalf("%d requests: the stream was not dropped", st.Requests)
	}
}

// TestDelayedViewersCount checks that a delayed viewer counts as a
// spectator of the room, and alone keeps its snapshots coming; that the
// room's spectator cap counts it; that the counts come back to 0, the
// delay line ends after DelayIdle and no goroutine is left behind.
func TestDelayedViewersCount(t *testing.T) {
	base := runtime.NumGoroutine()
	ts := start(t, Config{Hz: 30, SpectateHz: 10, MaxSpectators: 2, FeedDelayIdle: 500 * time.Millisecond})
	p := ts.join(t, "ana", "auto")
	room := p.Welcome().Room
	keepMoving(t, p)
	next[*wire.Snap](t, p)
	spectators := func() int { return ts.Lobby().List()[0].Spectators }
	waitSpectators := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); spectators() != n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d spectators counted, want %d", spectators(), n)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sse := func(query string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.http.URL+"/rooms/"+room+"/events"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := sse("?delay=1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("delayed stream: %d", resp.StatusCode)
	}
	waitSpectators(1)
	// Alone, the delayed viewer gets the moving room's snapshots, 1 s late.
	r := bufio.NewReader(resp.Body)
	snaps := 0
	for deadline := time.Now().Add(5 * time.Second); snaps < 10; {
		line, err := r.ReadString('\n')
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("%d snaps, then %v", snaps, err)
		}
		if line == "event: snap\n" {
			snaps++
		}
	}
	live := sse("")
	waitSpectators(2)
	// The cap of 2 counts the delayed viewer: a third viewer, delayed or
	// not, is refused.
	for _, q := range []string{"", "?delay=1", "?delay=3"} {
		over := sse(q)
		over.Body.Close()
		if over.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("third viewer %q: %d, want 503", q, over.StatusCode)
		}
	}
	if st := ts.feeds.Stats(); st.DelayLines != 1 || st.DelayBytes <= 0 {
		t.Errorf("stats %+v, want 1 delay line with bytes queued", st)
	}
	cancel()
	resp.Body.Close()
	live.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	waitSpectators(0)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := ts.feeds.Stats()
		if st.DelayLines == 0 && st.DelayBytes == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the delay line outlived its viewers", st)
		}
	}
	_ = p.Leave()
	closed(t, p)
	checkGoroutines(t, base+30) // the test server's own goroutines
}

// TestDelayedFeedMemory measures what a delayed feed queues for a room of
// 16 moving players: run with TICKWIRE_DELAY_MEMORY=1 -v.
func TestDelayedFeedMemory(t *testing.T) {
	if os.Getenv("TICKWIRE_DELAY_MEMORY") == "" {
		t.Skip("a measurement: set TICKWIRE_DELAY_MEMORY=1")
	}
	const delay = 10 * time.Second
	ts := start(t, Config{Hz: 30, SpectateHz: 10, MaxPlayers: 16})
	p := ts.join(t, "p0", "auto")
	room := p.Welcome().Room
	keepMoving(t, p)
	for i := 1; i < 16; i++ {
		keepMoving(t, ts.join(t, fmt.Sprint("p", i), room))
	}
	v := ts.watch(t, spectator.Options{Room: room, Delay: delay})
	rec := record(v)
	time.Sleep(delay + 3*time.Second)
	st := ts.feeds.Stats()
	var snapBytes, snaps int
	for _, e := range rec.list() {
		if e.Type == wire.EventSnap {
			snapBytes += len(e.Data)
			snaps++
		}
	}
	if snaps == 0 {
		t.Fatal("no snapshots")
	}
	t.Logf("16 players, delay %v: %d bytes queued (%d per second of delay; %.1f MiB for 600 s); snapshots of %d bytes on average",
		delay, st.DelayBytes, st.DelayBytes/int64(delay/time.Second), float64(st.DelayBytes)*60/(1<<20), snapBytes/snaps)
}

// TestDelayedFeedOnAnotherNode watches a room of node a from node b, live
// on a and 1 s late on b (b's delay line plays b's mirror of the room):
// the same events and ids, 1 s later, and b's delayed viewer counts among
// the room's spectators on a.
func TestDelayedFeedOnAnotherNode(t *testing.T) {
	const delay = time.Second
	nodes := startNodes(t, 2, Config{Hz: 30, SpectateHz: 10})
	a, b := nodes[0], nodes[1]
	p := a.join(t, "ana", createRoom(t, a, `{}`))
	keepMoving(t, p)
	room := p.Welcome().Room
	waitListing(t, b, entries(entry(room, a, 1)), 3*time.Second)
	delayedView := b.watch(t, spectator.Options{Room: room, Delay: delay})
	liveView := a.watch(t, spectator.Options{Room: room})
	live, delayed := record(liveView), record(delayedView)
	ready(t, b, 1, live)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rooms := listRooms(t, a); len(rooms) == 1 && rooms[0].Spectators == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a lists %+v, want 2 spectators", listRooms(t, a))
		}
	}
	var sent []string
	for i := range 10 {
		text := fmt.Sprint("line ", i)
		if err := p.Chat(text); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, text)
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(delay + 500*time.Millisecond)
	de := delayed.list()
	checkDelayed(t, live.list(), de, delay, false)
	if got := chatTexts(t, de); !slices.Equal(got, sent) {
		t.Errorf("delayed chat on b %q, sent %q", got, sent)
	}
}
