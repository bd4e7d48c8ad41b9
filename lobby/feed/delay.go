package feed

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tickwire/tickwire/internal/httpapi"
)

// Delayed feeds: GET /rooms/{room}/events?delay=S and /rooms/{room}/poll
// ?delay=S serve the live feed as it was S seconds ago (S a whole number
// of seconds, 0 to 600; 0 is the live feed itself): the same events under
// the same ids, each applied S seconds after the live feed published it.
//
// Design: an in-memory delay line, fed by the live feed's own
// publications, so the events and their ids are the live ones by
// construction. While a room has delayed viewers its live feed has a tap,
// a queue of everything it publishes, each event stamped with its
// publication time (and of the whole state, when the feed is a mirror
// that resynced). For each delay asked of the room there is a line: a
// Feed of its own (a delayed feed) that the tap's goroutine brings up to
// date with the queue, applying each event once its time plus the delay
// has passed, exactly as a mirror of another node applies its host's
// events (see cluster.go). Delayed viewers are served by the same SSE and
// long-poll code as live ones, reading the delayed feed; the queue is
// trimmed of what every line has applied, so it holds about the longest
// delay in use of the room's events. The room's recording (lobby/replay)
// is not played instead: it holds every tick, not which of them the live
// feed published as snapshots nor their ids, which depend on the viewers
// present then.
//
// A line starts with the live feed's state at that moment (room info,
// history, newest snapshot), which it applies S seconds later: a line has
// no past, so the first viewer of a delay waits S seconds (with `: ping`
// on SSE, an empty answer at a poll's timeout) before its `room` and
// `snap`, as a TV delay does; later viewers of that delay start at once
// with the line's state, S seconds old. Nothing newer than now−S is ever
// applied to a delayed feed, so no viewer of it can see anything newer.
//
// A delayed viewer counts as a viewer of the live feed (spectator counts,
// -max-spectators, parked-poll caps), and a tap keeps the live feed
// publishing snapshots while it lives, viewers or not. A line outlives its
// last viewer by HandlerConfig.DelayIdle (30 s), so a viewer that resumes
// with Last-Event-ID within that time reads on, still delayed; after it, a
// resume finds a new line, waits S seconds and gets the events after its
// id that the new line's history holds (it starts over with `room` when
// that history does not reach back to its id). A viewer that comes while
// its line waits holds the cursor 0 (no event has id 0; a long-poll that
// times out then answers "last":0): it reads the line's start, `room` and
// `snap` as the line started, then every event since, however many have
// been applied before it reads. Later, the cursor 0 gets the same while
// the delayed feed's history reaches back to the start, else it starts
// over as a new viewer does.
//
// Limits: the queue of a room holds S seconds of its feed (at the default
// 10 snapshots per second, 6,000 snapshots for S = 600); the queues of
// all rooms together are capped by HandlerConfig.MaxDelayBytes (256 MiB),
// beyond which a new delay line is refused (503 `unavailable`) while the
// lines already running go on; a room has at most
// HandlerConfig.MaxDelaysPerRoom (8) distinct delays. A delayed feed's
// history counts against the node's history Budget as a live feed's does.
// The cap is on admission: the lines running keep queueing past it (a
// room's queue is bounded by its event rate times its longest delay; a
// 16-player arena room queues about 12 KB per second of delay, 7 MiB at
// 600 s, see BENCHMARKS.md).
// A delayed feed is the node's own: on server shutdown its viewers' streams
// end without a `closed` (which lies in the future for them).

// MaxDelay is the longest delay a viewer may ask for.
const MaxDelay = 600 * time.Second

// Errors of delayedFeed, answered 503.
var (
	errDelayFull     = errors.New("feed: delayed feeds at capacity")
	errTooManyDelays = errors.New("feed: too many distinct delays on this room")
	errShuttingDown  = errors.New("feed: shutting down")
)

// delayItem is what a tap queues: an event the live feed published, or
// the live feed's whole state.
type delayItem struct {
	at    time.Time // when the live feed published it
	ev    *Event    // the event; nil for a state
	state *syncAnswer
	line  *delayLine // the line a state starts; nil: a state for every line (a mirror's resync)
	size  int64      // bytes counted against HandlerConfig.MaxDelayBytes
}

// delayTap is the delay lines of one room's live feed, and the queue
// they play from.
type delayTap struct {
	h    *Handlers
	room string
	live *Feed
	poke chan struct{} // capacity 1: a line caught up has something new

	mu    sync.Mutex // guards the fields below; taken after h.mu and live.mu
	items []delayItem
	base  uint64 // the position of items[0] in the queue, counting from 0
	bytes int64
	lines map[time.Duration]*delayLine
	ended bool
}

// delayLine plays its tap's queue delay late into feed.
type delayLine struct {
	delay time.Duration
	feed  *Feed
	next  uint64    // the position of the next item to apply
	used  time.Time // when it last had a viewer or was asked for
}

// size returns the bytes of a state's events.
func (a *syncAnswer) size() int64 {
	n := int64(eventOverhead)
	for _, e := range a.History {
		n += int64(len(e.Data)) + eventOverhead
	}
	for _, e := range a.Recent {
		n += int64(len(e.Data)) + eventOverhead
	}
	if a.Snap != nil {
		n += int64(len(a.Snap.Data)) + eventOverhead
	}
	return n
}

// parseDelay reads the `delay` query parameter: 0 when absent.
func parseDelay(r *http.Request) (time.Duration, error) {
	q := r.URL.Query()
	if !q.Has("delay") {
		return 0, nil
	}
	s, err := strconv.Atoi(q.Get("delay"))
	if err != nil || s < 0 || time.Duration(s)*time.Second > MaxDelay {
		return 0, errors.New("delay: whole seconds, 0 to " + strconv.Itoa(int(MaxDelay/time.Second)))
	}
	return time.Duration(s) * time.Second, nil
}

// feedFor finds the feed a viewer of the request reads: the room's live
// feed, or with ?delay=S (S > 0) its feed S seconds late. It answers the
// error and returns nil when there is none to read (a bad delay, an
// unknown or ended room, a room with too many viewers, delayed feeds at
// capacity).
func (h *Handlers) feedFor(w http.ResponseWriter, r *http.Request) *Feed {
	d, err := parseDelay(r)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, err.Error())
		return nil
	}
	if d == 0 {
		return h.lookup(w, r)
	}
	id := r.PathValue("room")
	h.mu.Lock()
	var live *Feed
	if t := h.taps[id]; t != nil {
		live = t.live // the room may have ended: its delayed feeds go on
	}
	h.mu.Unlock()
	if live == nil {
		if live = h.lookup(w, r); live == nil {
			return nil
		}
	} else if live.Viewers() >= h.cfg.MaxViewers {
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
			"room "+id+" has too many spectators", 5*time.Second)
		return nil
	}
	f, err := h.delayedFeed(id, live, d)
	if err != nil {
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, err.Error(), 5*time.Second)
		return nil
	}
	return f
}

// delayedFeed returns the feed that plays a room's live feed d late,
// starting its line, and the room's tap, when there is none yet.
func (h *Handlers) delayedFeed(room string, live *Feed, d time.Duration) (*Feed, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return nil, errShuttingDown
	}
	now := time.Now()
	t := h.taps[room]
	if t != nil {
		t.mu.Lock()
		l, n := t.lines[d], len(t.lines)
		if l != nil {
			l.used = now
		}
		t.mu.Unlock()
		switch {
		case l != nil:
			return l.feed, nil
		case n >= h.cfg.MaxDelaysPerRoom:
			return nil, errTooManyDelays
		}
		live = t.live
	}
	if h.delayBytes.Load() >= h.cfg.MaxDelayBytes {
		return nil, errDelayFull
	}
	start := t == nil
	if start {
		t = &delayTap{h: h, room: room, live: live, poke: make(chan struct{}, 1), lines: make(map[time.Duration]*delayLine)}
		h.taps[room] = t
	}
	df := New(live.cfg, live.addViewer)
	df.live, df.waiting = live, true
	l := &delayLine{delay: d, feed: df, used: now}
	live.mu.Lock()
	if start {
		live.delay = t
	}
	if live.pending && !live.closed { // the state starts with the newest snapshot
		live.publishSnapLocked()
	}
	st := live.stateLocked(0, math.MaxInt)
	t.mu.Lock()
	l.next = t.base + uint64(len(t.items))
	t.lines[d] = l
	t.pushLocked(delayItem{at: time.Now(), state: &st, line: l, size: st.size()})
	t.mu.Unlock()
	live.mu.Unlock()
	if start {
		h.wg.Add(1)
		go t.run()
	}
	t.wakeUp()
	return df, nil
}

// push queues an item the live feed published; it is called under the
// live feed's mu.
func (t *delayTap) push(it delayItem) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	// The goroutine sleeps until the next item due, or for a second: only
	// a line with nothing left to apply needs to be told of this one.
	end := t.base + uint64(len(t.items))
	caughtUp := false
	for _, l := range t.lines {
		caughtUp = caughtUp || l.next == end
	}
	t.pushLocked(it)
	t.mu.Unlock()
	if caughtUp {
		t.wakeUp()
	}
}

func (t *delayTap) pushLocked(it delayItem) {
	t.items = append(t.items, it)
	t.bytes += it.size
	t.h.delayBytes.Add(it.size)
}

func (t *delayTap) wakeUp() {
	select {
	case t.poke <- struct{}{}:
	default:
	}
}

// tendEvery is how often a tap looks for lines without viewers.
const tendEvery = time.Second

// run applies the queue to the lines as their items come due, and ends
// the lines left without viewers, until none is left or the handlers shut
// down.
func (t *delayTap) run() {
	defer t.h.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	tended := time.Now()
	for {
		select {
		case <-timer.C:
		case <-t.poke:
		case <-t.h.done:
			t.end(true)
			return
		}
		now := time.Now()
		wait := t.step(now)
		if now.Sub(tended) >= tendEvery {
			tended = now
			if !t.tend(now) {
				return
			}
		}
		timer.Reset(wait)
	}
}

// step applies to each line the items that have come due by now, trims
// the queue of what every line has applied, and returns how long to wait
// for the next item due (at most tendEvery).
func (t *delayTap) step(now time.Time) time.Duration {
	type work struct {
		l     *delayLine
		items []delayItem
	}
	var due []work
	wait := tendEvery
	t.mu.Lock()
	for _, l := range t.lines {
		i := int(l.next - t.base)
		j := i
		for j < len(t.items) && !now.Before(t.items[j].at.Add(l.delay)) {
			j++
		}
		if j > i {
			due = append(due, work{l, t.items[i:j]})
			l.next = t.base + uint64(j)
		}
		if j < len(t.items) {
			wait = min(wait, t.items[j].at.Add(l.delay).Sub(now))
		}
	}
	t.mu.Unlock()
	// Only this goroutine trims the queue, so the items taken stay put
	// while they are applied (push only appends).
	for _, w := range due {
		for _, it := range w.items {
			switch {
			case it.ev != nil:
				e := *it.ev // the same bytes, entered in this feed's history
				e.seq = 0
				w.l.feed.applyEvent(&e)
			case it.line == nil || it.line == w.l:
				w.l.feed.load(it.state)
			}
		}
	}
	t.mu.Lock()
	t.trimLocked()
	t.mu.Unlock()
	return max(wait, 0)
}

// trimLocked drops the items every line has applied.
func (t *delayTap) trimLocked() {
	keep := t.base + uint64(len(t.items))
	for _, l := range t.lines {
		keep = min(keep, l.next)
	}
	k := int(keep - t.base)
	var freed int64
	for i := range k {
		freed += t.items[i].size
	}
	clear(t.items[:k])
	t.items = t.items[k:]
	t.base += uint64(k)
	t.bytes -= freed
	t.h.delayBytes.Add(-freed)
}

// tend ends the lines that have had no viewer for DelayIdle; it reports
// false, having ended the tap, when none is left.
func (t *delayTap) tend(now time.Time) bool {
	t.h.mu.Lock()
	t.mu.Lock()
	for d, l := range t.lines {
		if l.feed.Viewers() > 0 {
			l.used = now
		} else if now.Sub(l.used) >= t.h.cfg.DelayIdle {
			delete(t.lines, d)
		}
	}
	left := len(t.lines)
	t.trimLocked()
	t.mu.Unlock()
	t.h.mu.Unlock()
	return left > 0 || !t.end(false)
}

// end detaches the tap from its live feed and frees its queue, once it
// has no line left, or with all (the handlers' shutdown) ending its lines.
// It reports whether it ended the tap.
func (t *delayTap) end(all bool) bool {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	t.mu.Lock()
	if !all && len(t.lines) > 0 { // a viewer came meanwhile
		t.mu.Unlock()
		return false
	}
	if t.h.taps[t.room] == t {
		delete(t.h.taps, t.room)
	}
	t.ended = true
	clear(t.lines)
	t.mu.Unlock()
	t.live.mu.Lock()
	if t.live.delay == t {
		t.live.delay = nil
	}
	t.live.mu.Unlock()
	t.mu.Lock()
	t.h.delayBytes.Add(-t.bytes)
	t.items, t.bytes = nil, 0
	t.mu.Unlock()
	return true
}

// applyEvent publishes an event of the live feed in a delayed feed, under
// its live id.
func (f *Feed) applyEvent(e *Event) {
	f.mu.Lock()
	f.applyEventLocked(e)
	f.mu.Unlock()
	f.acct.b.settle()
}

// room returns the feed whose room a viewer of f watches: f, or the live
// feed f plays late.
func (f *Feed) room() *Feed {
	if f.live != nil {
		return f.live
	}
	return f
}
