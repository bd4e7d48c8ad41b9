package feed

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// ids returns the ids of a batch's events of one type.
func ids(b Batch, typ string) []uint64 {
	var out []uint64
	for _, e := range b.Events {
		if e.Type == typ {
			out = append(out, e.ID)
		}
	}
	return out
}

// TestDelayLine covers a delayed feed from its start: nothing before the
// delay, then the room as it was when the line started and every event
// since under its live id, even for a viewer that came while the line
// waited and reads only once several events have been applied; a delayed
// viewer counts on the live feed; the line ends once idle.
func TestDelayLine(t *testing.T) {
	const delay = 300 * time.Millisecond
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return nil, ErrUnknownRoom }, DelayIdle: 100 * time.Millisecond})
	defer h.Shutdown()
	live := New(Config{}, nil)
	opened(live)
	snap(live, 1)
	chat(live, "before")
	began := time.Now()
	df, err := h.delayedFeed("r", live, delay)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := h.delayedFeed("r", live, delay); again != df {
		t.Fatal("a second viewer of the delay got another feed")
	}
	b := df.Read(-1, Stream)
	if len(b.Events) != 0 || b.Last != 0 {
		t.Fatalf("waiting delayed feed read %s last %d", types(b), b.Last)
	}
	live.Joined(&wire.Joined{ID: 2, Name: "bo"})
	chat(live, "a")
	snap(live, 4)
	chat(live, "b")
	select {
	case <-b.Wake:
		if d := time.Since(began); d < delay {
			t.Fatalf("delayed feed woke %v after it started", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the delayed feed never started")
	}
	time.Sleep(delay) // every event applied before the viewer reads
	b = df.Read(0, Stream)
	if got := types(b); got != "room,snap,joined,chat,snap,chat," {
		t.Fatalf("first read of a viewer that waited: %s", got)
	}
	var info wire.SpectatorRoom
	if err := json.Unmarshal(b.Events[0].Data, &info); err != nil || len(info.Players) != 1 {
		t.Fatalf("room as the line started: %s", b.Events[0].Data)
	}
	lb := live.Read(0, Stream)
	if got, want := ids(b, wire.EventChat), ids(lb, wire.EventChat)[1:]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delayed chat ids %v, live %v", got, want)
	}
	if got := df.Read(-1, Stream); types(got) != "room,snap," {
		t.Fatalf("a new viewer starts with %s", types(got))
	}
	df.addViewer(1)
	if live.Viewers() != 2 || df.Viewers() != 1 {
		t.Fatalf("viewers: live %d, delayed %d", live.Viewers(), df.Viewers())
	}
	df.addViewer(-1)
	live.Closed("gone")
	last := b.Last
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b := df.Read(int64(last), Stream); b.Closed {
			if types(b) != "closed," {
				t.Fatalf("the end: %s", types(b))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no closed")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := h.Stats()
		live.mu.Lock()
		tapped := live.delay != nil
		live.mu.Unlock()
		if st.DelayLines == 0 && st.DelayBytes == 0 && !tapped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle line kept: %+v, tapped %v", st, tapped)
		}
	}
}

// TestDelayLimits checks the caps on distinct delays per room and on the
// bytes queued.
func TestDelayLimits(t *testing.T) {
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return nil, ErrUnknownRoom }, MaxDelaysPerRoom: 2})
	defer h.Shutdown()
	live := New(Config{}, nil)
	opened(live)
	for _, d := range []time.Duration{time.Second, 2 * time.Second} {
		if _, err := h.delayedFeed("r", live, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.delayedFeed("r", live, 3*time.Second); err != errTooManyDelays {
		t.Fatalf("third delay: %v", err)
	}
	h.delayBytes.Add(h.cfg.MaxDelayBytes)
	other := New(Config{}, nil)
	opened(other)
	if _, err := h.delayedFeed("s", other, time.Second); err != errDelayFull {
		t.Fatalf("delay over the bytes cap: %v", err)
	}
	h.delayBytes.Add(-h.cfg.MaxDelayBytes)
}

// TestDelayedPollFromStart has a long-poll wait on a delayed feed for its
// start while events are published right after: its first answers carry
// the start and then every one of those events, none skipped.
func TestDelayedPollFromStart(t *testing.T) {
	live := New(Config{}, nil)
	opened(live)
	snap(live, 1)
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return live, nil }})
	defer h.Shutdown()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms/{room}/poll", h.Poll)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	type answer struct {
		Events []struct {
			ID   uint64 `json:"id"`
			Type string `json:"type"`
		} `json:"events"`
		Last uint64 `json:"last"`
	}
	poll := func(query string) answer {
		t.Helper()
		resp, err := http.Get(srv.URL + "/rooms/r/poll?delay=1&timeout=2" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("poll: %d %v", resp.StatusCode, err)
		}
		return a
	}
	began := time.Now()
	first := make(chan answer, 1)
	go func() { first <- poll("") }()
	for h.Stats().DelayLines == 0 {
		time.Sleep(time.Millisecond)
	}
	live.Joined(&wire.Joined{ID: 2, Name: "bo"})
	chat(live, "a")
	a := <-first
	if d := time.Since(began); d < time.Second {
		t.Fatalf("answered %v after the poll, before the delay", d)
	}
	var got []string
	for i := 0; ; i++ {
		for _, e := range a.Events {
			got = append(got, e.Type)
		}
		if len(got) >= 4 || i == 3 {
			break
		}
		a = poll(fmt.Sprint("&after=", a.Last))
	}
	if fmt.Sprint(got) != "[room snap joined chat]" {
		t.Fatalf("delayed poll got %v", got)
	}
}
