// Package spectator is a Go client of Tickwire's read-only spectator feeds:
// Server-Sent Events (/rooms/{room}/events) and HTTP long-poll
// (/rooms/{room}/poll). A Viewer reconnects by itself after a drop and
// resumes from the last event id it saw, so no joined, left or chat event
// of the resume window is lost; it ends when the room is closed. It also
// plays a room's recording (/rooms/{room}/replay, Options.Replay), which
// ends with `closed` "end-of-replay". With Options.Delay it watches the
// live feed that much late (?delay=S).
//
// A Viewer's methods are safe for concurrent use; events arrive in order
// on Events.
package spectator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// Transports a Viewer can use.
const (
	SSE  = "sse"
	Poll = "poll"
)

// Event is one feed event.
type Event struct {
	ID   uint64
	Type string // wire.Event*
	Data json.RawMessage
}

// Options tell Watch what to watch and how.
type Options struct {
	Server    string // http://host:port
	Room      string
	Transport string // SSE (default) or Poll
	// Resume makes the first request resume after LastID instead of
	// starting with a `room` event.
	Resume bool
	LastID uint64
	// PollTimeout is the long-poll wait asked of the server (25s).
	PollTimeout time.Duration
	// Delay, when set, watches the live feed that much late (?delay=S,
	// whole seconds up to 10 minutes; a fraction is dropped): the same
	// events, each sent Delay after the live feed sent it.
	Delay time.Duration
	// Replay, when set, watches the room's recording instead of its live
	// feed (GET /rooms/{room}/replay, SSE only); a reconnection resumes
	// after the last event id seen.
	Replay *Replay
	Token  string // JWT when the server requires one (sent as a bearer token)
	Header http.Header
	Client *http.Client // http.DefaultClient when nil
	Buffer int          // capacity of Events (1024)
}

// Replay says where a replay starts and how fast it plays.
type Replay struct {
	From  uint64  // the first tick (0: the start of the recording)
	Speed float64 // times the room's pace, 0.25..16 (0: 1)
}

// StatusError is an HTTP error answer that ends a Viewer (404 unknown room,
// 410 ended room, 400 bad request, 401, 403).
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("spectator: HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// Stats count a Viewer's work.
type Stats struct {
	Requests int64 // HTTP requests made
	Bytes    int64 // response body bytes read
	Events   int64
}

// Viewer watches one room.
type Viewer struct {
	opts   Options
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}

	last     atomic.Int64 // last event id seen, -1 for none
	requests atomic.Int64
	bytes    atomic.Int64
	count    atomic.Int64

	mu       sync.Mutex // guards err and dropConn
	err      error
	dropConn context.CancelFunc // ends the current request (Drop)
}

// Watch starts watching. It returns an error at once only for a bad
// option; HTTP errors end the Viewer and show in Err.
func Watch(ctx context.Context, o Options) (*Viewer, error) {
	if o.Transport == "" {
		o.Transport = SSE
	}
	if o.Transport != SSE && o.Transport != Poll {
		return nil, fmt.Errorf("spectator: unknown transport %q", o.Transport)
	}
	if o.Replay != nil && o.Transport != SSE {
		return nil, errors.New("spectator: replays are served over SSE only")
	}
	if !wire.ValidID(o.Room) {
		return nil, fmt.Errorf("spectator: bad room id %q", o.Room)
	}
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = 25 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	v := &Viewer{opts: o, events: make(chan Event, o.Buffer), cancel: cancel, done: make(chan struct{})}
	v.last.Store(-1)
	if o.Resume {
		v.last.Store(int64(o.LastID))
	}
	go v.run(ctx)
	return v, nil
}

// Events delivers the events in order; it is closed when the Viewer ends.
func (v *Viewer) Events() <-chan Event { return v.events }

// LastID returns the id of the newest event handed to Events, if any: the
// cursor the Viewer resumes from.
func (v *Viewer) LastID() (uint64, bool) {
	id := v.last.Load()
	return uint64(max(id, 0)), id >= 0
}

// Err returns why the Viewer ended: nil after a `closed` event or Close.
func (v *Viewer) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// Stats returns the Viewer's counters.
func (v *Viewer) Stats() Stats {
	return Stats{Requests: v.requests.Load(), Bytes: v.bytes.Load(), Events: v.count.Load()}
}

// Done is closed when the Viewer has ended.
func (v *Viewer) Done() <-chan struct{} { return v.done }

// Drop ends the current connection as a network failure would; the Viewer
// reconnects and resumes.
func (v *Viewer) Drop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.dropConn != nil {
		v.dropConn()
	}
}

// Close stops the Viewer and waits for it to end.
func (v *Viewer) Close() {
	v.cancel()
	go func() {
		for range v.events { // unblock a delivery in progress
		}
	}()
	<-v.done
}

// errClosed ends the run loop after a `closed` event.
var errClosed = errors.New("room closed")

func (v *Viewer) run(ctx context.Context) {
	defer close(v.done)
	defer close(v.events)
	retry := 2 * time.Second
	for ctx.Err() == nil {
		reqCtx, drop := context.WithCancel(ctx)
		v.mu.Lock()
		v.dropConn = drop
		v.mu.Unlock()
		var err error
		if v.opts.Transport == SSE {
			err = v.stream(reqCtx, &retry)
		} else {
			err = v.poll(reqCtx)
		}
		drop()
		var se *StatusError
		switch {
		case errors.Is(err, errClosed) || ctx.Err() != nil:
			return
		case errors.As(err, &se) && se.Status != http.StatusServiceUnavailable:
			v.mu.Lock()
			v.err = err
			v.mu.Unlock()
			return
		}
		wait := retry // SSE: as the server said in `retry:`
		if v.opts.Transport == Poll {
			wait = time.Second
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

// delayQuery adds Options.Delay to a feed request's query.
func (v *Viewer) delayQuery(q url.Values) url.Values {
	if s := int64(v.opts.Delay / time.Second); s > 0 {
		q.Set("delay", strconv.FormatInt(s, 10))
	}
	return q
}

func (v *Viewer) url(path string, q url.Values) string {
	return strings.TrimSuffix(v.opts.Server, "/") + "/rooms/" + v.opts.Room + path + "?" + q.Encode()
}

func (v *Viewer) get(ctx context.Context, u string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, vals := range v.opts.Header {
		req.Header[k] = vals
	}
	for k, vals := range header {
		req.Header[k] = vals
	}
	if v.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+v.opts.Token)
	}
	v.requests.Add(1)
	resp, err := v.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &StatusError{Status: resp.StatusCode, Body: string(body)}
	}
	return resp, nil
}

// deliver hands an event to the reader and moves the cursor past it. It
// returns errClosed after a `closed` event. The cursor moves before the
// hand-off, so that a reader holding the event finds LastID at it, and
// moves back when the event is not handed over (the request dropped or the
// Viewer closed meanwhile): the next request asks for it again.
func (v *Viewer) deliver(ctx context.Context, e Event) error {
	prev := v.last.Swap(int64(e.ID))
	select {
	case v.events <- e:
	case <-ctx.Done():
		v.last.Store(prev)
		return ctx.Err()
	}
	v.count.Add(1)
	if e.Type == wire.EventClosed {
		return errClosed
	}
	return nil
}

// stream reads one SSE response until it ends.
func (v *Viewer) stream(ctx context.Context, retry *time.Duration) error {
	h := http.Header{"Accept": {"text/event-stream"}}
	if id, ok := v.LastID(); ok {
		h.Set("Last-Event-ID", strconv.FormatUint(id, 10))
	}
	path, q := "/events", v.delayQuery(url.Values{})
	if rp := v.opts.Replay; rp != nil {
		path, q = "/replay", url.Values{}
		if rp.From > 0 {
			q.Set("from", strconv.FormatUint(rp.From, 10))
		}
		if rp.Speed > 0 {
			q.Set("speed", strconv.FormatFloat(rp.Speed, 'g', -1, 64))
		}
	}
	resp, err := v.get(ctx, v.url(path, q), h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var e Event
	var data []string
	hasID := false
	for {
		line, err := r.ReadString('\n')
		v.bytes.Add(int64(len(line)))
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" { // dispatch
			if len(data) > 0 && hasID {
				e.Data = json.RawMessage(strings.Join(data, "\n"))
				if err := v.deliver(ctx, e); err != nil {
					return err
				}
			}
			e, data, hasID = Event{}, data[:0], false
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "": // comment, e.g. the `: ping` heartbeat
		case "id":
			id, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return fmt.Errorf("spectator: bad id %q", value)
			}
			e.ID, hasID = id, true
		case "event":
			e.Type = value
		case "data":
			data = append(data, value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				*retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// pollAnswer is the body of a long-poll answer.
type pollAnswer struct {
	Events []struct {
		ID   uint64          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"events"`
	Last uint64 `json:"last"`
}

// poll runs long-polls until one fails.
func (v *Viewer) poll(ctx context.Context) error {
	for {
		q := v.delayQuery(url.Values{"timeout": {strconv.Itoa(int(v.opts.PollTimeout / time.Second))}})
		if id, ok := v.LastID(); ok {
			q.Set("after", strconv.FormatUint(id, 10))
		}
		resp, err := v.get(ctx, v.url("/poll", q), nil)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		v.bytes.Add(int64(len(body)))
		if err != nil {
			return err
		}
		var a pollAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("spectator: poll answer: %w", err)
		}
		for _, e := range a.Events {
			if err := v.deliver(ctx, Event{ID: e.ID, Type: e.Type, Data: e.Data}); err != nil {
				return err
			}
		}
		v.last.Store(int64(a.Last))
	}
}
