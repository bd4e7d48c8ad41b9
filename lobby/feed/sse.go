package feed

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tickwire/tickwire/internal/auth"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/internal/limits"
)

// An SSE viewer that has caught up holds no goroutine: its connection is
// taken over from net/http (hijacked) and parked with its room's other idle
// streams, and one pump goroutine per room writes each new event to all of
// them. A viewer whose socket cannot take an event at once gets a goroutine
// of its own until it has caught up again. HTTP/2 streams, which cannot be
// taken over, are served by their handler goroutine. Long-polls parked for
// a while are taken over the same way (see poll.go).
//
// Exactly one goroutine owns a taken-over connection at a time, and only
// its owner writes to it, moves its cursor or drops it: the handler until
// the viewer first parks, the pump while the viewer is in the idle set,
// and a catch-up goroutine once the pump has taken it out of the set to
// hand it over. Only the pump takes viewers out of the set, and after a
// hand-over it forgets them (it never reuses a list of viewers taken
// before it handed some over), so a viewer is dropped exactly once and no
// two writes to one connection overlap.
//
// The pump writes to a viewer with a short deadline only where a write cut
// by a deadline leaves the connection usable (plain TCP: the rest is
// written later by the catch-up goroutine). A timed-out write on a TLS
// connection breaks it for good, half a record sent, so a taken-over TLS
// connection (HTTP/1.1 with -tls-cert) is never written by the pump: it is
// handed to a goroutine of its own, with the ordinary write deadline, for
// each batch, and parks again once it has caught up.

// rawHead renders the head of a taken-over response: status 200, the
// handler's headers (CORS ones included) and Connection: close, without
// the blank line that ends it.
func rawHead(h http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b)
	b.WriteString("Connection: close\r\n")
	return b.Bytes()
}

// idleWrite is how long the pump waits on one viewer's socket before
// handing that viewer to a goroutine of its own.
const idleWrite = 2 * time.Millisecond

var ping = []byte(httpapi.SSEPing)

// sseConn is a taken-over SSE connection.
type sseConn struct {
	conn    net.Conn
	inline  bool      // the pump may write to conn with a short deadline (see shortWritesSafe)
	wrote   bool      // the pump's current round wrote to it
	cursor  uint64    // id of the last event written
	expires time.Time // the stream ends then (its token expires); zero: never
	release func()    // frees the connection's slot in the server's limits
}

// expired reports whether v's token has expired.
func (v *sseConn) expired(now time.Time) bool {
	return !v.expires.IsZero() && now.After(v.expires)
}

// idleStreams are the parked SSE connections and long-polls of one feed
// and their pump.
type idleStreams struct {
	h    *Handlers
	f    *Feed
	poke chan struct{} // a viewer or poll was added (capacity 1)

	mu      sync.Mutex // guards viewers, polls and running
	viewers map[*sseConn]struct{}
	polls   map[*parkedPoll]struct{}
	running bool
}

// SSE serves GET /rooms/{room}/events.
func (h *Handlers) SSE(w http.ResponseWriter, r *http.Request) {
	after, err := httpapi.LastEventID(r)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "Last-Event-ID: "+err.Error())
		return
	}
	f := h.feedFor(w, r)
	if f == nil {
		return
	}
	f.addViewer(1)
	h.sseOpen.Add(1)
	retry := httpapi.AppendSSERetry(nil, h.cfg.Retry)
	// The stream's first bytes, written at once in one write: retry, then
	// `room` and the newest `snap` (a new viewer), or the missed events
	// then the newest `snap` (a resume), whether or not the room moves.
	var b Batch
	if after < 0 {
		b = f.Read(after, Stream)
	} else {
		b = f.Resume(after, Stream)
	}
	if r.ProtoMajor == 1 {
		httpapi.SetSSEHeaders(w.Header())
		head := rawHead(w.Header())
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			v := &sseConn{conn: conn, inline: shortWritesSafe(conn), cursor: b.Last,
				expires: auth.Expiry(r.Context()), release: limits.Detach(r.Context())}
			if h.writeConn(v, h.cfg.WriteWait, slices.Concat(head, []byte("\r\n"), retry, sseBytes(b))) != nil || b.Closed {
				h.drop(f, v)
				return
			}
			h.catchUp(f, v, f.Read(int64(v.cursor), Stream))
			return
		}
	}
	defer f.addViewer(-1)
	defer h.sseOpen.Add(-1)
	h.serveStream(w, r, f, retry, b)
}

// closeConn closes a taken-over connection at once. A *tls.Conn's Close
// first sends close_notify with a write deadline of 5 s, which would hold
// its caller (a pump) on a socket its reader has stopped reading: the
// socket under it is closed instead; what was written is still delivered,
// then the end of the stream.
func closeConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	_ = c.Close()
}

// shortWritesSafe reports whether a write to c cut by its deadline leaves
// c usable, having written a prefix of what it was given: so on TCP (and
// Unix) sockets. A *tls.Conn is broken for good by a timed-out write, and
// other wrappers are not known to be safe.
func shortWritesSafe(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// writeConn writes p to v within wait.
func (h *Handlers) writeConn(v *sseConn, wait time.Duration, p []byte) error {
	_ = v.conn.SetWriteDeadline(time.Now().Add(wait))
	n, err := v.conn.Write(p)
	h.bytesSSE.Add(int64(n))
	return err
}

// drop closes a taken-over viewer.
func (h *Handlers) drop(f *Feed, v *sseConn) {
	closeConn(v.conn)
	v.release()
	f.addViewer(-1)
	h.sseOpen.Add(-1)
}

// sseBytes joins a batch's events into one write.
func sseBytes(b Batch) []byte {
	var p []byte
	for _, e := range b.Events {
		p = append(p, e.SSE()...)
	}
	return p
}

// catchUp writes to v, on the calling goroutine, every batch from b on
// until v has nothing left to read, then parks v with its room's idle
// streams. It ends v when the room closes, the server shuts down or a write
// fails.
func (h *Handlers) catchUp(f *Feed, v *sseConn, b Batch) {
	for len(b.Events) > 0 && !v.expired(time.Now()) {
		if h.writeConn(v, h.cfg.WriteWait, sseBytes(b)) != nil {
			h.drop(f, v)
			return
		}
		v.cursor = b.Last
		if b.Closed {
			h.drop(f, v)
			return
		}
		b = f.Read(int64(v.cursor), Stream)
	}
	if b.Closed || v.expired(time.Now()) || !h.parkStream(f, v) {
		h.drop(f, v)
	}
}

// parkStream adds v to its feed's idle streams, starting their pump if
// needed. It reports false once the handlers are shutting down. The pump
// is poked only when v is behind: one that parks with nothing to read
// is found by the pump's next round (every new event starts one; see pump).
func (h *Handlers) parkStream(f *Feed, v *sseConn) bool {
	cursor := v.cursor // once parked, v is the pump's
	return h.parkIdle(f, func(s *idleStreams) { s.viewers[v] = struct{}{} },
		func() bool { return cursor < f.streamTip() })
}

// parkIdle adds a connection to its feed's idle set with add, starting the
// pump if needed. It pokes a running pump unless behind (nil: always),
// asked once the connection is in the set, reports false. It reports
// false once the handlers are shutting down.
func (h *Handlers) parkIdle(f *Feed, add func(*idleStreams), behind func() bool) bool {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return false
	}
	s := h.idle[f]
	if s == nil {
		s = &idleStreams{h: h, f: f, poke: make(chan struct{}, 1),
			viewers: make(map[*sseConn]struct{}), polls: make(map[*parkedPoll]struct{})}
		h.idle[f] = s
	}
	s.mu.Lock()
	add(s)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if start {
		go s.pump()
	}
	// A pump that listed its viewers before this one was added learns of
	// it here, or from the event that puts it behind: the pump takes the
	// feed's wake channel before it lists.
	if start || behind == nil || behind() {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
	return true
}

// pump writes new events to the idle streams of its feed and answers its
// parked polls, until none is left or the handlers shut down.
func (s *idleStreams) pump() {
	defer s.h.wg.Done()
	heartbeat := time.NewTimer(s.h.cfg.Heartbeat)
	defer heartbeat.Stop()
	pollDue := time.NewTimer(time.Hour)
	defer pollDue.Stop()
	pingDue := false
	for {
		wake := s.f.wakeChan()
		viewers, polls := s.list()
		if len(viewers) == 0 && len(polls) == 0 {
			return
		}
		// From here on only the viewers deliver returns are the pump's.
		viewers, wrote := s.deliver(viewers)
		if pingDue {
			for _, v := range viewers {
				if !v.wrote {
					s.write(v, ping, v.cursor)
				}
			}
			pingDue, wrote = false, true
		}
		if wrote {
			heartbeat.Reset(s.h.cfg.Heartbeat)
		}
		if next := s.answerPolls(polls, false); !next.IsZero() {
			pollDue.Reset(time.Until(next))
		}
		if len(viewers) == 0 && len(polls) == 0 {
			// Every viewer it had was handed over or dropped: list again
			// now, and end if none is left, rather than at the next wake
			// (a heartbeat away in a room that has ended).
			continue
		}
		select {
		case <-wake:
		case <-s.poke:
		case <-pollDue.C:
		case <-heartbeat.C:
			pingDue = true
		case <-s.h.done:
			viewers, polls := s.list()
			viewers, _ = s.deliver(viewers) // the rooms' `closed` events
			for _, v := range viewers {
				s.remove(v)
				s.h.drop(s.f, v)
			}
			s.answerPolls(polls, true)
			return
		}
	}
}

// list returns the idle viewers and parked polls; with none it stops the
// pump's run, under the same lock as parkIdle, so a connection parked later
// starts a new pump.
func (s *idleStreams) list() ([]*sseConn, []*parkedPoll) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	viewers := make([]*sseConn, 0, len(s.viewers))
	for v := range s.viewers {
		viewers = append(viewers, v)
	}
	polls := make([]*parkedPoll, 0, len(s.polls))
	for p := range s.polls {
		polls = append(polls, p)
	}
	if len(viewers) == 0 && len(polls) == 0 {
		s.running = false
		delete(s.h.idle, s.f)
	}
	return viewers, polls
}

func (s *idleStreams) remove(v *sseConn) {
	s.mu.Lock()
	delete(s.viewers, v)
	s.mu.Unlock()
}

// deliver writes to each viewer the events after its cursor, reading and
// joining them once per distinct cursor, and sets each one's wrote. It
// returns the viewers still idle, the only ones the pump may touch
// afterwards (the others were handed over or dropped), and whether it
// wrote.
func (s *idleStreams) deliver(viewers []*sseConn) ([]*sseConn, bool) {
	type pending struct {
		p      []byte
		last   uint64
		closed bool
	}
	byCursor := make(map[uint64]pending)
	wrote := false
	now := time.Now()
	kept := viewers[:0]
	for _, v := range viewers {
		v.wrote = false
		if v.expired(now) {
			s.remove(v)
			s.h.drop(s.f, v)
			continue
		}
		pd, ok := byCursor[v.cursor]
		if !ok {
			b := s.f.Read(int64(v.cursor), Stream)
			pd = pending{sseBytes(b), b.Last, b.Closed}
			byCursor[v.cursor] = pd
		}
		if len(pd.p) > 0 {
			wrote, v.wrote = true, true
			if !s.write(v, pd.p, pd.last) {
				continue
			}
		}
		if pd.closed {
			s.remove(v)
			s.h.drop(s.f, v)
			continue
		}
		kept = append(kept, v)
	}
	clear(viewers[len(kept):])
	return kept, wrote
}

// write gives p to v, the pump's, without waiting on a full socket: a
// viewer that cannot take it at once (or on whose connection a short write
// is not safe) leaves the idle streams for a goroutine of its own; one
// whose connection failed is dropped. It reports whether v is still the
// pump's, with p written.
func (s *idleStreams) write(v *sseConn, p []byte, last uint64) bool {
	if !v.inline {
		s.handOver(v, p, last)
		return false
	}
	_ = v.conn.SetWriteDeadline(time.Now().Add(idleWrite))
	n, err := v.conn.Write(p)
	s.h.bytesSSE.Add(int64(n))
	switch {
	case err == nil:
		v.cursor = last
		return true
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.handOver(v, p[n:], last)
		return false
	}
	s.remove(v)
	s.h.drop(s.f, v)
	return false
}

// handOver takes v out of the idle streams and gives it to a goroutine of
// its own, which writes rest (the unwritten end of what brings v to last),
// catches v up and parks it again. The pump must not touch v afterwards.
func (s *idleStreams) handOver(v *sseConn, rest []byte, last uint64) {
	s.remove(v)
	s.h.wg.Add(1) // the pump's own count is held: no Wait can be under way at zero
	go func() {
		defer s.h.wg.Done()
		if s.h.writeConn(v, s.h.cfg.WriteWait, rest) != nil {
			s.h.drop(s.f, v)
			return
		}
		v.cursor = last
		s.h.catchUp(s.f, v, s.f.Read(int64(last), Stream))
	}()
}

// serveStream serves an SSE stream on its handler goroutine (HTTP/2).
func (h *Handlers) serveStream(w http.ResponseWriter, r *http.Request, f *Feed, retry []byte, b Batch) {
	httpapi.SetSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	write := func(p []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteWait))
		defer rc.SetWriteDeadline(time.Time{}) // idle streams have no deadline
		n, err := w.Write(p)
		h.bytesSSE.Add(int64(n))
		if err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The stream's first bytes in one write (see SSE).
	if !write(slices.Concat(retry, sseBytes(b))) || b.Closed {
		return
	}
	b = f.Read(int64(b.Last), Stream)
	heartbeat := time.NewTimer(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	var expired <-chan time.Time
	if exp := auth.Expiry(r.Context()); !exp.IsZero() {
		t := time.NewTimer(time.Until(exp))
		defer t.Stop()
		expired = t.C
	}
	for {
		if len(b.Events) > 0 {
			if !write(sseBytes(b)) {
				return
			}
			heartbeat.Reset(h.cfg.Heartbeat)
		}
		if b.Closed {
			return
		}
		select {
		case <-b.Wake:
			b = f.Read(int64(b.Last), Stream)
		case <-heartbeat.C:
			if !write(ping) {
				return
			}
			heartbeat.Reset(h.cfg.Heartbeat)
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-expired:
			return
		}
	}
}
