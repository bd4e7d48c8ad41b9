package feed

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/internal/httpapi"
)

// Errors a Lookup returns for rooms without a feed.
var (
	ErrUnknownRoom = errors.New("feed: unknown room")
	ErrRoomEnded   = errors.New("feed: room has ended")
)

// HandlerConfig sets the SSE and long-poll handlers. Zero fields take the
// defaults.
type HandlerConfig struct {
	// Lookup finds a room's feed, or returns ErrUnknownRoom or ErrRoomEnded.
	Lookup          func(room string) (*Feed, error)
	Retry           time.Duration // reconnect delay told to SSE clients (2s)
	Heartbeat       time.Duration // `: ping` after this much silence (15s)
	WriteWait       time.Duration // deadline of each write to a viewer (10s)
	PollTimeout     time.Duration // default long-poll wait (25s)
	MaxPollsPerRoom int           // parked polls per room (5000)
	MaxPolls        int           // parked polls in the server (20000)
	MaxViewers      int           // SSE streams and parked polls per room, delayed ones included (5000)
	// MaxDelayBytes caps the queues of the delayed feeds of all rooms
	// (256 MiB): beyond it a new delay line is refused. MaxDelaysPerRoom
	// is the number of distinct delays a room may have at once (8).
	// DelayIdle is how long a delay line outlives its last viewer (30s).
	MaxDelayBytes    int64
	MaxDelaysPerRoom int
	DelayIdle        time.Duration
}

func (c HandlerConfig) withDefaults() HandlerConfig {
	if c.Retry <= 0 {
		c.Retry = 2 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteWait <= 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = 25 * time.Second
	}
	if c.MaxPollsPerRoom <= 0 {
		c.MaxPollsPerRoom = 5000
	}
	if c.MaxPolls <= 0 {
		c.MaxPolls = 20000
	}
	if c.MaxViewers <= 0 {
		c.MaxViewers = 5000
	}
	if c.MaxDelayBytes <= 0 {
		c.MaxDelayBytes = 256 << 20
	}
	if c.MaxDelaysPerRoom <= 0 {
		c.MaxDelaysPerRoom = 8
	}
	if c.DelayIdle <= 0 {
		c.DelayIdle = 30 * time.Second
	}
	return c
}

// Long-poll timeout bounds, in seconds.
const (
	MinPollTimeout = 1
	MaxPollTimeout = 55
)

// Handlers serve the spectator feeds over SSE and long-poll.
type Handlers struct {
	cfg       HandlerConfig
	parked    atomic.Int64 // parked polls in the server
	sseOpen   atomic.Int64 // SSE streams open
	bytesSSE  atomic.Int64
	bytesPoll atomic.Int64
	// delayBytes is the bytes queued by the delayed feeds' taps.
	delayBytes atomic.Int64
	done       chan struct{}
	doneOnce   sync.Once
	wg         sync.WaitGroup // pumps and catch-up writers of idle streams, delay taps

	mu      sync.Mutex // guards idle, taps and closing
	idle    map[*Feed]*idleStreams
	taps    map[string]*delayTap // the delayed feeds, by room
	closing bool
}

// Stats are the handlers' counters.
type Stats struct {
	Streams     int64 // SSE streams open
	ParkedPolls int64 // long-polls waiting
	BytesSSE    int64 // bytes written to SSE streams, headers included
	BytesPoll   int64 // bytes of long-poll answers' bodies
	DelayBytes  int64 // bytes queued for the delayed feeds
	DelayLines  int64 // delayed feeds running (one per room and delay)
}

// Stats returns the handlers' counters.
func (h *Handlers) Stats() Stats {
	st := Stats{Streams: h.sseOpen.Load(), ParkedPolls: h.parked.Load(), BytesSSE: h.bytesSSE.Load(),
		BytesPoll: h.bytesPoll.Load(), DelayBytes: h.delayBytes.Load()}
	h.mu.Lock()
	for _, t := range h.taps {
		t.mu.Lock()
		st.DelayLines += int64(len(t.lines))
		t.mu.Unlock()
	}
	h.mu.Unlock()
	return st
}

// NewHandlers returns the feed handlers.
func NewHandlers(cfg HandlerConfig) *Handlers {
	return &Handlers{cfg: cfg.withDefaults(), done: make(chan struct{}), idle: make(map[*Feed]*idleStreams),
		taps: make(map[string]*delayTap)}
}

// Shutdown ends every SSE stream, after the events already published, and
// answers every parked poll at once; it waits for the streams' writers. It
// is safe to call twice.
func (h *Handlers) Shutdown() {
	h.doneOnce.Do(func() {
		h.mu.Lock()
		h.closing = true
		h.mu.Unlock()
		close(h.done)
	})
	h.wg.Wait()
}

// lookup finds the feed of the request's {room} and checks that it has
// room for one more viewer, or answers the error.
func (h *Handlers) lookup(w http.ResponseWriter, r *http.Request) *Feed {
	id := r.PathValue("room")
	f, err := h.cfg.Lookup(id)
	switch {
	case errors.Is(err, ErrRoomEnded):
		httpapi.WriteError(w, http.StatusGone, httpapi.CodeGone, "room "+id+" has ended")
		return nil
	case err != nil:
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "no room "+id)
		return nil
	case f.Viewers() >= h.cfg.MaxViewers:
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
			"room "+id+" has too many spectators", 5*time.Second)
		return nil
	}
	return f
}

// parkPoll counts a waiting poll against the room's and the server's caps
// (a delayed feed's polls count in its live feed's room).
func (h *Handlers) parkPoll(f *Feed) bool {
	inRoom, inServer := f.room().parked.Add(1), h.parked.Add(1)
	if inRoom > int64(h.cfg.MaxPollsPerRoom) || inServer > int64(h.cfg.MaxPolls) {
		f.room().parked.Add(-1)
		h.parked.Add(-1)
		return false
	}
	f.addViewer(1)
	return true
}

func (h *Handlers) unparkPoll(f *Feed) {
	f.addViewer(-1)
	f.room().parked.Add(-1)
	h.parked.Add(-1)
}
