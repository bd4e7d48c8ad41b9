package feed

import (
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/tickwire/tickwire/internal/auth"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/internal/limits"
)

// A poll that has waited hijackAfter on its handler goroutine with nothing
// to answer, or that parks on a room where nothing has happened for
// quietAfter, is taken over from net/http and parked with its room's idle
// connections: the room's pump answers it when an event comes or its time
// is up, and closes the connection after the answer (the client's next poll
// opens a new one). Polls answered sooner, as in a room where things move,
// keep their connection alive. A taken-over answer is written as SSE
// batches are (see sse.go): by the pump what the socket takes at once, the
// rest, or all of it on a TLS connection, by a goroutine of its own.
const (
	hijackAfter = 250 * time.Millisecond
	quietAfter  = time.Second
)

// parkedPoll is a taken-over long-poll.
type parkedPoll struct {
	conn     net.Conn
	inline   bool // the pump may write to conn with a short deadline (see shortWritesSafe)
	after    int64
	deadline time.Time
	head     []byte // the response head, without Content-Length
	release  func()
}

// Poll serves GET /rooms/{room}/poll?after=<id>&timeout=<s>.
func (h *Handlers) Poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after := int64(-1)
	if q.Has("after") {
		var err error
		if after, err = httpapi.ParseEventID(q.Get("after")); err != nil || q.Get("after") == "" {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "after: event ids are integers >= 0")
			return
		}
	}
	timeout := h.cfg.PollTimeout
	if s := q.Get("timeout"); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs != secs {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "timeout: seconds, a number")
			return
		}
		secs = min(max(secs, MinPollTimeout), MaxPollTimeout)
		timeout = time.Duration(secs * float64(time.Second))
	}
	f := h.feedFor(w, r)
	if f == nil {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	b := f.Read(after, Coalesce)
	if after < 0 && len(b.Events) == 0 {
		// A new viewer of a delayed feed that waits for its start: it
		// waits with the cursor Read gave it, to get the start.
		after = int64(b.Last)
	}
	if len(b.Events) == 0 && !b.Closed {
		if !h.parkPoll(f) {
			httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
				"too many parked polls; try again", time.Second)
			return
		}
		deadline := time.Now().Add(timeout)
		if exp := auth.Expiry(r.Context()); !exp.IsZero() && exp.Before(deadline) {
			deadline = exp
		}
		var answer bool
		if b, answer = h.waitPoll(w, r, f, after, b, deadline); !answer {
			return
		}
		h.unparkPoll(f)
	}
	body := pollBody(b)
	_, _ = w.Write(body)
	h.bytesPoll.Add(int64(len(body)))
}

// waitPoll waits for events on the handler goroutine. It returns the batch
// to answer with and true, or false when there is nothing to answer here:
// the client went away (the poll is unparked) or the poll was taken over.
func (h *Handlers) waitPoll(w http.ResponseWriter, r *http.Request, f *Feed, after int64, b Batch, deadline time.Time) (Batch, bool) {
	wait := hijackAfter
	if f.quiet(quietAfter) {
		wait = 0
	}
	timer := time.NewTimer(min(time.Until(deadline), wait))
	defer timer.Stop()
	for len(b.Events) == 0 && !b.Closed {
		select {
		case <-b.Wake:
			b = f.Read(after, Coalesce)
		case <-timer.C:
			left := time.Until(deadline)
			if left <= 0 {
				return b, true
			}
			if r.ProtoMajor == 1 && h.takeOverPoll(w, r, f, after, deadline) {
				return b, false
			}
			timer.Reset(left)
		case <-h.done:
			return b, true
		case <-r.Context().Done():
			h.unparkPoll(f)
			return b, false
		}
	}
	return b, true
}

// takeOverPoll hijacks a parked poll's connection and hands it to the
// room's pump; it reports false when the connection stays with net/http.
func (h *Handlers) takeOverPoll(w http.ResponseWriter, r *http.Request, f *Feed, after int64, deadline time.Time) bool {
	head := rawHead(w.Header())
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	p := &parkedPoll{conn: conn, inline: shortWritesSafe(conn), after: after, deadline: deadline, head: head,
		release: limits.Detach(r.Context())}
	if !h.parkIdle(f, func(s *idleStreams) { s.polls[p] = struct{}{} }, nil) {
		h.answerTaken(f, p, f.Read(after, Coalesce), false) // shutting down
	}
	return true
}

// answerTaken writes a taken-over poll's answer and closes its connection.
// On the pump (onPump) it writes what the socket takes at once and leaves
// the rest, or the whole answer where a short write is not safe (TLS), to
// a goroutine of its own, as for SSE viewers.
func (h *Handlers) answerTaken(f *Feed, p *parkedPoll, b Batch, onPump bool) {
	body := pollBody(b)
	resp := slices.Concat(p.head, []byte("Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body)
	end := func(err error) {
		if err == nil {
			h.bytesPoll.Add(int64(len(body)))
		}
		closeConn(p.conn)
		p.release()
		h.unparkPoll(f)
	}
	if onPump && p.inline {
		_ = p.conn.SetWriteDeadline(time.Now().Add(idleWrite))
		n, err := p.conn.Write(resp)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			end(err)
			return
		}
		resp = resp[n:]
	}
	write := func() {
		_ = p.conn.SetWriteDeadline(time.Now().Add(h.cfg.WriteWait))
		_, err := p.conn.Write(resp)
		end(err)
	}
	if !onPump {
		write()
		return
	}
	h.wg.Add(1) // the pump's own count is held: no Wait can be under way at zero
	go func() {
		defer h.wg.Done()
		write()
	}()
}

// answerPolls answers the parked polls that have events, whose room has
// closed, whose time is up, or all of them when all is set. It returns the
// earliest deadline of those still waiting, or zero.
func (s *idleStreams) answerPolls(polls []*parkedPoll, all bool) time.Time {
	var next time.Time
	now := time.Now()
	for _, p := range polls {
		b := s.f.Read(p.after, Coalesce)
		if all || len(b.Events) > 0 || b.Closed || !now.Before(p.deadline) {
			s.mu.Lock()
			delete(s.polls, p)
			s.mu.Unlock()
			s.h.answerTaken(s.f, p, b, true)
			continue
		}
		if next.IsZero() || p.deadline.Before(next) {
			next = p.deadline
		}
	}
	return next
}

// pollBody renders a long-poll answer.
func pollBody(b Batch) []byte {
	size := len(`{"events":[],"last":}`) + 21
	for _, e := range b.Events {
		size += e.pollSize() + 1
	}
	body := make([]byte, 0, size)
	body = append(body, `{"events":[`...)
	for i, e := range b.Events {
		if i > 0 {
			body = append(body, ',')
		}
		body = e.appendPoll(body)
	}
	body = append(body, `],"last":`...)
	body = strconv.AppendUint(body, b.Last, 10)
	return append(body, "}\n"...)
}
