package replay

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/wire"
)

// HandlerConfig sets the replay handlers. Zero fields take the defaults.
type HandlerConfig struct {
	// Store holds the recordings; nil: none (every replay is 404, the
	// listing empty).
	Store     *Store
	Retry     time.Duration // reconnect delay told to SSE clients (2s)
	Heartbeat time.Duration // `: ping` after this long without an event (15s)
	WriteWait time.Duration // deadline of each write to a viewer (10s)
}

// Limits of the handlers' parameters.
const (
	DefaultListLimit = 50   // recordings listed when `limit` is not given
	MaxListLimit     = 1000 // the largest `limit`
	MinSpeed         = 0.25 // the slowest `speed`
	MaxSpeed         = 16   // the fastest `speed`
)

// Handlers serve GET /api/replays and GET /rooms/{room}/replay. Each replay
// stream is served on its request's goroutine; Shutdown ends them.
type Handlers struct {
	cfg      HandlerConfig
	done     chan struct{}
	doneOnce sync.Once
}

// NewHandlers returns the replay handlers.
func NewHandlers(cfg HandlerConfig) *Handlers {
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = 10 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	return &Handlers{cfg: cfg, done: make(chan struct{})}
}

// Shutdown ends every replay stream (their handlers return soon after).
// It is safe to call twice.
func (h *Handlers) Shutdown() { h.doneOnce.Do(func() { close(h.done) }) }

// List serves GET /api/replays?limit=&before=: {"replays":[Summary...]},
// newest first; `limit` in 1..MaxListLimit (DefaultListLimit), `before` a
// Unix ms: only recordings that started before it (the `start` of the
// last one of a page gives the next page).
func (h *Handlers) List(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "limit: an integer in 1..1000")
			return
		}
		limit = n
	}
	var before int64
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "before: a time in Unix ms")
			return
		}
		before = n
	}
	list := []Summary{}
	if h.cfg.Store != nil {
		list = h.cfg.Store.List(limit, before)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, map[string][]Summary{"replays": list})
}

// SSE serves GET /rooms/{room}/replay?from=&speed=: the recording as
// Server-Sent Events, from tick `from` (default: the start) at `speed`
// (MinSpeed..MaxSpeed, default 1) times the room's pace; a Last-Event-ID
// header (or ?lastEventId=) resumes after that id instead. Snapshots are
// sent at the room's tick rate scaled by speed, the other events right
// after the snapshot before them; the stream ends after `closed`
// ("end-of-replay"). An unknown or expired recording is 404.
func (h *Handlers) SSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var from uint64
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "from: a tick number >= 0")
			return
		}
		from = n
	}
	speed := 1.0
	if s := q.Get("speed"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v >= MinSpeed && v <= MaxSpeed) {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "speed: a number in 0.25..16")
			return
		}
		speed = v
	}
	after, err := httpapi.LastEventID(r)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "Last-Event-ID: "+err.Error())
		return
	}
	room := r.PathValue("room")
	if h.cfg.Store == nil {
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "no recording of room "+room)
		return
	}
	rd, err := h.cfg.Store.OpenContext(r.Context(), room)
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteError(w, http.StatusNotFound, httpapi.CodeNotFound, "no recording of room "+room)
		return
	}
	if err != nil {
		httpapi.WriteError(w, http.StatusInternalServerError, httpapi.CodeUnavailable, "the recording cannot be read")
		return
	}
	defer rd.Close()
	if after >= 0 {
		rd.ResumeAfter(uint64(after))
	} else {
		rd.Seek(from)
	}
	httpapi.SetSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	p := pacer{hz: float64(max(rd.Room().Hz, 1)), speed: speed}
	s := &sseWriter{w: w, rc: http.NewResponseController(w), wait: h.cfg.WriteWait}
	s.buf = httpapi.AppendSSERetry(s.buf, h.cfg.Retry)
	// A replay of a running room waits for what the room records next:
	// Next is given a context that expires every Heartbeat, and a wait it
	// cuts short is answered with a `: ping`.
	beat := &heartbeat{parent: ctx, every: h.cfg.Heartbeat}
	beat.renew()
	defer beat.cancel()
	for {
		e, err := rd.Next(beat.ctx)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			beat.renew()
			s.buf = append(s.buf, httpapi.SSEPing...)
			if s.flush() != nil {
				return
			}
			continue
		}
		if err != nil {
			_ = s.flush()
			return
		}
		if e.Type == wire.EventSnap {
			if d := p.wait(e.N, time.Now()); d > 0 {
				if s.flush() != nil {
					return
				}
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
		}
		s.event(e)
		if e.Type == wire.EventClosed {
			_ = s.flush()
			return
		}
		if len(s.buf) >= 32<<10 && s.flush() != nil {
			return
		}
	}
}

// heartbeat is a context that expires every so often, cutting short a
// wait of the replay's reader.
type heartbeat struct {
	parent context.Context
	every  time.Duration
	ctx    context.Context
	cancel context.CancelFunc
}

// renew replaces the context with one that expires a period from now.
func (b *heartbeat) renew() {
	if b.cancel != nil {
		b.cancel()
	}
	b.ctx, b.cancel = context.WithTimeout(b.parent, b.every)
}

// pacer spaces a replay's snapshots as their ticks were, scaled by speed.
type pacer struct {
	hz, speed float64
	started   bool
	n0        uint64    // the tick paced from
	t0        time.Time // when it was sent
}

// wait returns how long to wait before sending the snapshot of tick n.
// A viewer that has fallen more than a second behind is paced from where
// it is, rather than sent a burst.
func (p *pacer) wait(n uint64, now time.Time) time.Duration {
	if !p.started || n < p.n0 {
		p.started, p.n0, p.t0 = true, n, now
		return 0
	}
	due := p.t0.Add(time.Duration(float64(n-p.n0) / p.hz / p.speed * float64(time.Second)))
	if d := due.Sub(now); d > 0 {
		return d
	} else if d < -time.Second {
		p.n0, p.t0 = n, now
	}
	return 0
}

// sseWriter buffers Server-Sent Events and writes them with a deadline.
type sseWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	wait time.Duration
	buf  []byte
}

// event buffers e, as the store's readers encoded it when they did.
func (s *sseWriter) event(e *Event) {
	if e.sse != nil {
		s.buf = append(s.buf, e.sse...)
		return
	}
	s.buf = httpapi.AppendSSE(s.buf, e.ID, e.Type, e.Data)
}

func (s *sseWriter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err == nil {
		err = s.rc.Flush()
	}
	return err
}
