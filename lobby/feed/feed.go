// Package feed is a room's spectator feed: an event log with strictly
// increasing ids, a history window of the reliable events (joined, left,
// chat, closed), the newest snapshot decimated to the spectate rate, and the
// Server-Sent Events and long-poll handlers that read it.
//
// Each event is encoded once, when it is published, as the Server-Sent
// Events block the streams write, its JSON data a slice of that block;
// viewers share those bytes, and a long-poll answer is assembled from the
// data. A Feed is fed by its room's goroutine (it implements room.Observer)
// and read by any number of viewer goroutines; all its methods are safe for
// concurrent use.
//
// The history is bounded by count (Config.History) and by bytes, per feed
// (Config.HistoryBytes) and over every feed of the process (a Budget); the
// oldest events go first, and a viewer resuming from an evicted id starts
// over with `room` and the newest `snap`. With the defaults a room keeps at
// least its last 1,000 reliable events of normal size (chat lines of up to
// 280 ASCII characters) until the process-wide budget runs out.
//
// A delayed feed (?delay=S, see delay.go) is a Feed of its own that plays a
// live one S seconds late: an in-memory delay line, fed by the live feed's
// publications, applies each event to it under its live id S seconds after
// it was published, so its viewers, served by the same SSE and long-poll
// code, get the live events and ids and never anything newer than now−S.
// A line keeps only what its delay needs and starts without a past: the
// first viewer of a delay waits S seconds for its first event.
package feed

import (
	"encoding/json"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/wire"
)

// Config sets a feed. Zero fields take the defaults.
type Config struct {
	SpectateHz int // snapshots per second at most (10)
	// History and HistoryBytes cap the reliable events kept for resumes,
	// by count (1024) and by bytes (DefaultHistoryBytes, 1 MiB), the
	// oldest evicted first. The defaults keep at least 1,000 chat lines of
	// up to 280 ASCII characters; longer lines (many escaped or multi-byte
	// characters) leave fewer.
	History      int
	HistoryBytes int64
	// Budget caps the history of all the feeds that share it, in bytes;
	// when it is full the oldest events of all those feeds go first. Nil:
	// the process-wide default budget (DefaultBudgetBytes, 64 MiB), shared
	// by every feed created without one.
	Budget *Budget
}

// Defaults of Config.HistoryBytes and of the process-wide Budget.
const (
	DefaultHistoryBytes = 1 << 20
	DefaultBudgetBytes  = 64 << 20
)

func (c Config) withDefaults() Config {
	if c.SpectateHz <= 0 {
		c.SpectateHz = 10
	}
	if c.History <= 0 {
		c.History = 1024
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = DefaultHistoryBytes
	}
	if c.Budget == nil {
		c.Budget = defaultBudget
	}
	return c
}

// Event is one feed event, encoded once for both transports.
type Event struct {
	ID   uint64
	Type string
	Data []byte // the JSON data object, a slice of sse
	sse  []byte // "id: ..\nevent: ..\ndata: ..\n\n"
	seq  uint64 // order of entry into a history, over the feeds of a Budget
}

// newEvent encodes an event in one buffer: its SSE block, which holds
// its data.
func newEvent(id uint64, typ string, data []byte) *Event {
	b := httpapi.AppendSSE(make([]byte, 0, len("id: \nevent: \ndata: \n\n")+20+len(typ)+len(data)), id, typ, data)
	end := len(b) - 2
	return &Event{ID: id, Type: typ, Data: b[end-len(data) : end : end], sse: b}
}

// eventOverhead is what an event in a history costs besides its bytes:
// the Event and its slot in the history.
const eventOverhead = 96

// size is what the event counts for in a history's byte caps.
func (e *Event) size() int64 { return int64(cap(e.sse)) + eventOverhead }

// SSE returns the event as a Server-Sent Events block.
func (e *Event) SSE() []byte { return e.sse }

// appendPoll appends the event as an element of a long-poll `events`
// array: {"id":..,"type":"..","data":..}.
func (e *Event) appendPoll(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, e.ID, 10)
	b = append(b, `,"type":"`...)
	b = append(b, e.Type...)
	b = append(b, `","data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// pollSize bounds the length of the event's appendPoll.
func (e *Event) pollSize() int {
	return len(`{"id":,"type":"","data":}`) + 20 + len(e.Type) + len(e.Data)
}

// Batch is what a viewer reads at once.
type Batch struct {
	Events []*Event
	Last   uint64        // the id to resume after; the cursor given when Events is empty
	Closed bool          // the room has ended: Events ends with `closed`, or the viewer saw it
	Wake   chan struct{} // closed when something newer is published
}

// Feed is the event log of one room.
type Feed struct {
	cfg     Config
	stride  uint64 // ticks between published snapshots
	viewers atomic.Int64
	parked  atomic.Int64 // parked long-polls

	acct     *account   // the history's share of cfg.Budget
	mu       sync.Mutex // guards the fields below
	nextID   uint64     // id of the next event; ids start at 1
	history  []*Event   // reliable events, oldest first, within the caps of cfg
	histSize int64      // the history's size in bytes (Event.size)
	evicted  uint64     // id of the newest event dropped from history
	tip      uint64     // id of the newest event a Stream read may return (not a re-stamped snapshot)
	end      *Event     // the `closed` event, once published
	snap     *Event     // newest snapshot, nil before the first
	snapOrig uint64     // the id snap was first published with (it may be re-stamped since)
	recent   []*Event   // the last recentSnaps snapshots, oldest first
	hasLast  bool       // lastN, lastST and last hold a snapshot
	lastN    uint64     // tick of the newest snapshot taken
	lastST   int64
	last     []wire.Table // the tables of the newest snapshot taken
	pending  bool         // the newest snapshot is not encoded yet (no viewer wanted it)
	info     wire.SpectatorRoom
	infoID   uint64 // id of the newest reliable event, 0 before any
	closed   bool
	lastPub  time.Time // when the newest event was published
	wake     chan struct{}
	onViewer func(delta int)
	relay    func(e *Event)           // tells the other nodes of every event; nil when none watch
	watched  atomic.Int64             // unix nanoseconds until which other nodes watch
	remote   map[string]remoteViewers // viewers on other nodes, by node

	delay   *delayTap // the delayed feeds' tap of this live feed, nil when none
	live    *Feed     // for a delayed feed: the live feed it plays late; nil for a live one
	waiting bool      // a delayed feed that has not reached its first state yet
	// start is what a delayed feed's first viewers, who came while it
	// waited, get first: `room` and `snap` as of its first state, whose
	// last id is startLast.
	start     []*Event
	startLast uint64
}

// remoteViewers are the viewers of a feed on another node.
type remoteViewers struct {
	n     int
	until time.Time // when they count no more, unless renewed
}

// New returns an empty feed. onViewer, when set, is told of every viewer
// that comes (+1) and goes (-1).
func New(cfg Config, onViewer func(delta int)) *Feed {
	f := &Feed{cfg: cfg.withDefaults(), nextID: 1, wake: make(chan struct{}), onViewer: onViewer}
	f.acct = &account{b: f.cfg.Budget, feed: weak.Make(f), index: -1}
	// A feed nobody references any more gives its bytes back.
	runtime.AddCleanup(f, func(a *account) { a.b.forget(a) }, f.acct)
	return f
}

// Viewers returns the number of SSE streams and parked polls open now.
func (f *Feed) Viewers() int { return int(f.viewers.Load()) }

func (f *Feed) addViewer(delta int) {
	f.viewers.Add(int64(delta))
	if f.onViewer != nil {
		f.onViewer(delta)
	}
}

// publishLocked appends a reliable event, or makes a snapshot the newest,
// and wakes every waiting viewer.
func (f *Feed) publishLocked(typ string, data []byte) {
	f.publishEventLocked(newEvent(f.nextID, typ, data))
}

// publishEventLocked is publishLocked for an encoded event whose id is
// the feed's next.
func (f *Feed) publishEventLocked(e *Event) {
	typ := e.Type
	f.nextID = e.ID + 1
	if typ == wire.EventSnap {
		f.snap, f.snapOrig = e, e.ID
		if len(f.recent) == recentSnaps {
			f.recent = slices.Delete(f.recent, 0, 1)
		}
		f.recent = append(f.recent, e)
	} else {
		f.keepLocked(e)
		f.infoID = e.ID
		if typ == wire.EventClosed {
			f.end = e
		}
	}
	f.tip = e.ID
	now := time.Now()
	if f.relay != nil && f.watchedRemotely() {
		f.relay(e)
	}
	if f.delay != nil {
		f.delay.push(delayItem{at: now, ev: e, size: e.size()})
	}
	if typ != wire.EventSnap && typ != wire.EventClosed && f.snap != nil {
		// The newest snapshot now precedes a reliable event: give it a
		// fresh id (same data), so a reader that starts after this event
		// still gets it with an id above. Done here, at once, rather than
		// when a reader asks, so that every node mirroring the feed
		// numbers its events alike.
		f.snap = newEvent(f.nextID, wire.EventSnap, f.snap.Data)
		f.nextID++
	}
	f.lastPub = now
	close(f.wake)
	f.wake = make(chan struct{})
}

// quiet reports whether nothing has been published for at least d.
func (f *Feed) quiet(d time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.pending && time.Since(f.lastPub) >= d
}

func (f *Feed) publish(typ string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the wire types of this package are published
	}
	f.mu.Lock()
	if !f.closed {
		f.publishLocked(typ, data)
	}
	f.mu.Unlock()
	f.acct.b.settle()
}

// streamTip returns the id of the newest event a Stream read may return
// (a re-stamped snapshot aside): a streaming viewer whose cursor is below
// it has something to read.
func (f *Feed) streamTip() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tip
}

// wakeChan returns the channel closed by the next publish.
func (f *Feed) wakeChan() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wake
}

// Opened records the room's starting info. It implements room.Observer.
func (f *Feed) Opened(info wire.SpectatorRoom) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.info = info
	f.info.Players = slices.Clone(info.Players)
	f.stride = uint64(max(1, (info.Hz+f.cfg.SpectateHz-1)/f.cfg.SpectateHz))
}

// LastID returns the id of the newest joined, left, chat or closed event
// published, 0 before any: called by the room goroutine right after it
// handed the feed such an event, the id that event got.
func (f *Feed) LastID() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.infoID
}

// Joined publishes a `joined` event.
func (f *Feed) Joined(m *wire.Joined) {
	f.mu.Lock()
	f.joinedLocked(m)
	f.mu.Unlock()
	f.publish(wire.EventJoined, m)
}

// Left publishes a `left` event.
func (f *Feed) Left(m *wire.Left) {
	f.mu.Lock()
	f.leftLocked(m)
	f.mu.Unlock()
	f.publish(wire.EventLeft, m)
}

// joinedLocked adds a player to the room info new viewers get.
func (f *Feed) joinedLocked(m *wire.Joined) {
	f.info.Players = append(f.info.Players, wire.PlayerInfo{ID: m.ID, Name: m.Name})
}

// leftLocked removes a player from the room info new viewers get.
func (f *Feed) leftLocked(m *wire.Left) {
	f.info.Players = slices.DeleteFunc(f.info.Players, func(p wire.PlayerInfo) bool { return p.ID == m.ID })
}

// Chat publishes a `chat` event.
func (f *Feed) Chat(m *wire.ChatLine) { f.publish(wire.EventChat, m) }

// Snap publishes a `snap` event when at least 1/SpectateHz has passed in
// ticks since the last one and the state differs from the last published
// (a room where nothing moves sends its viewers nothing). While the room
// has no viewer the snapshot is only kept, and encoded when one comes.
// Other ticks cost a comparison.
func (f *Feed) Snap(n uint64, st int64, tables []wire.Table) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.info.Schema == nil || f.hasLast && n < f.lastN+f.stride {
		return // a room opened without a schema has no snapshots to show
	}
	if f.hasLast && sameTables(tables, f.last) {
		return
	}
	f.hasLast, f.lastN, f.lastST = true, n, st
	if len(f.last) != len(tables) {
		f.last = make([]wire.Table, len(tables))
	}
	for i := range tables {
		f.last[i].Cols = tables[i].Cols
		f.last[i].Data = append(f.last[i].Data[:0], tables[i].Data...)
	}
	f.pending = true
	if f.viewers.Load() > 0 || f.watchedRemotely() || f.delay != nil {
		f.publishSnapLocked()
	}
}

// publishSnapLocked encodes and publishes the kept snapshot.
func (f *Feed) publishSnapLocked() {
	f.pending = false
	f.publishLocked(wire.EventSnap, wire.AppendSnapJSON(nil, f.lastN, f.lastST, f.info.Schema, f.last))
}

// sameTables reports whether two snapshots' tables hold the same rows.
func sameTables(a, b []wire.Table) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !slices.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

// Closed publishes the final `closed` event; viewers end after it.
func (f *Feed) Closed(reason string) {
	data, _ := json.Marshal(wire.SpectatorClosed{Reason: reason})
	f.mu.Lock()
	if !f.closed {
		f.publishLocked(wire.EventClosed, data)
		f.closed = true
	}
	f.mu.Unlock()
	f.acct.b.settle()
}

// Modes of Read.
const (
	// Coalesce returns at most one snapshot, the newest (long-poll).
	Coalesce = false
	// Stream returns every snapshot still among the recent ones, so
	// viewers that keep up all see the same snapshot ids (SSE).
	Stream = true
)

// recentSnaps is how many snapshots a streaming viewer may fall behind by
// before it gets only the newest.
const recentSnaps = 8

// Read returns the events after the cursor `after`. With after < 0 (a new
// viewer), or a cursor older than the history window or newer than any id,
// it returns a `room` event and the newest snapshot, so the viewer starts
// over. Otherwise it returns every reliable event after the cursor, in
// order, with the snapshots newer than the cursor: each of the recent ones
// in id order (Stream), or the newest only (Coalesce). The newest snapshot
// is stamped anew after each reliable event; it counts as newer than the
// cursor only when its state is (it was first published after the
// cursor), so a viewer that reads on is not sent a state it has.
func (f *Feed) Read(after int64, stream bool) Batch { return f.read(after, stream, false) }

// Resume is Read for the first read of a viewer that comes back with the
// id of the last event it had (an SSE stream opened with Last-Event-ID):
// the batch ends with the newest snapshot whenever its id is above the
// cursor, even when the room's state has not changed since the viewer
// last had it, so that a resume is always the missed reliable events then
// the newest snapshot.
func (f *Feed) Resume(after int64, stream bool) Batch { return f.read(after, stream, true) }

func (f *Feed) read(after int64, stream, resume bool) Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live != nil {
		switch {
		case f.waiting: // a delayed feed before its start: nothing yet
			return Batch{Last: uint64(max(after, 0)), Wake: f.wake}
		case after == 0 && f.start != nil && f.startLast >= f.evicted:
			// A viewer that came while the delayed feed waited for its
			// start (no event has id 0): the start, then all since.
			b := f.readLocked(int64(f.startLast), stream, resume)
			b.Events = append(slices.Clone(f.start), b.Events...)
			return b
		case after == 0:
			after = -1 // start over
		}
	}
	return f.readLocked(after, stream, resume)
}

func (f *Feed) readLocked(after int64, stream, resume bool) Batch {
	if f.pending && !f.closed {
		f.publishSnapLocked()
	}
	b := Batch{Wake: f.wake, Closed: f.closed}
	if after < 0 || uint64(after) < f.evicted || uint64(after) >= f.nextID {
		switch {
		case f.closed && f.end == nil: // a mirror of a host that no longer had it
			b.Last = f.nextID - 1
			return b
		case f.closed: // nothing to start over from: just the end
			b.Events = append(b.Events, f.end)
		default:
			b.Events = f.startOverLocked()
		}
		b.Last = b.Events[len(b.Events)-1].ID
		return b
	}
	cursor := uint64(after)
	reliable := f.history[firstAfter(f.history, cursor):]
	switch {
	case f.closed:
		b.Events = append(b.Events, reliable...)
	case stream:
		snaps := f.recent[firstAfter(f.recent, cursor):]
		b.Events = make([]*Event, 0, len(reliable)+len(snaps))
		for len(reliable) > 0 || len(snaps) > 0 {
			if len(snaps) == 0 || len(reliable) > 0 && reliable[0].ID < snaps[0].ID {
				b.Events, reliable = append(b.Events, reliable[0]), reliable[1:]
			} else {
				b.Events, snaps = append(b.Events, snaps[0]), snaps[1:]
			}
		}
	default:
		b.Events = append(b.Events, reliable...)
	}
	if !f.closed && f.snap != nil && (resume || !stream && f.snapOrig > cursor) {
		// The newest snapshot has the highest id of all (it is re-stamped
		// after every reliable event), unless the batch already ends with it.
		if n := len(b.Events); f.snap.ID > cursor && (n == 0 || b.Events[n-1] != f.snap) {
			b.Events = append(b.Events, f.snap)
		}
	}
	b.Last = cursor
	if n := len(b.Events); n > 0 {
		b.Last = b.Events[n-1].ID
	}
	return b
}

// firstAfter returns the index of the first event with an id above id.
func firstAfter(events []*Event, id uint64) int {
	i, _ := slices.BinarySearchFunc(events, id+1, func(e *Event, id uint64) int {
		return int(int64(e.ID) - int64(id))
	})
	return i
}

// startOverLocked returns what a new viewer gets first: `room` and the
// newest snapshot.
func (f *Feed) startOverLocked() []*Event {
	data, _ := json.Marshal(f.info)
	events := []*Event{newEvent(f.infoID, wire.EventRoom, data)}
	if s := f.snapAfterLocked(f.infoID); s != nil {
		events = append(events, s)
	}
	return events
}

// snapAfterLocked returns the newest snapshot if its id is above id
// (always so for the newest reliable event, see publishLocked).
func (f *Feed) snapAfterLocked(id uint64) *Event {
	if f.snap == nil || f.snap.ID <= id {
		return nil
	}
	return f.snap
}
