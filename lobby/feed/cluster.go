package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/wire"
)

// Feeds across nodes: a viewer on any node may watch a room hosted by
// another. The node the viewer reaches keeps a mirror of the room's feed,
// a Feed like the host's with the same events under the same ids, so a
// viewer may resume on any node.
//
// Subjects, for room R hosted by node N:
//
//	tickwire.feed.N.R.sync   request: the feed's state, a page of history
//	tickwire.feed.N.R.watch  "keep telling me": renews the watch
//	tickwire.feed.N.R.ev     every event while watched: "<id> <type> <data>"
//
// A sync or watch makes the host relay each event it publishes for the
// next Lease; mirrors with viewers renew it every Lease/3. A mirror checks
// that each event has the id it expects (ids are given by the host alone,
// and a mirror numbers what it derives, the re-stamped snapshot, exactly as
// the host does); a gap, or a mirror that stopped watching while it had no
// viewers, is filled with a new sync before viewers read on. A mirror whose
// host leaves the directory asks the host once more and, when nobody
// answers, ends its feed with `closed` reason "node-lost".

// ClusterConfig sets a Cluster.
type ClusterConfig struct {
	Bus  bus.Bus
	Node string // this node's id
	Feed Config // settings of the mirrors' feeds
	// Local finds a feed of this node's rooms (ErrUnknownRoom when it has
	// no such room).
	Local func(room string) (*Feed, error)
	// Host returns the node hosting a room of another node, from the
	// room directory.
	Host func(room string) (node string, ok bool)
	// Lease is how long a watch keeps a host relaying (5s); a mirror
	// renews it every Lease/3.
	Lease time.Duration
	// Idle is how long a mirror keeps watching with no viewer (30s).
	Idle   time.Duration
	Logger *slog.Logger
}

func (c ClusterConfig) withDefaults() ClusterConfig {
	if c.Lease <= 0 {
		c.Lease = 5 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ReasonNodeLost is the `closed` reason a mirror gives when the node
// hosting its room is gone.
const ReasonNodeLost = "node-lost"

// feedSubject is the prefix of the feeds' subjects.
const feedSubject = "tickwire.feed"

// syncPageBytes bounds the history carried by one sync answer, well under
// a NATS server's default payload limit of 1 MB.
const syncPageBytes = 256 << 10

// Cluster serves this node's feeds to other nodes and mirrors theirs.
type Cluster struct {
	cfg    ClusterConfig
	hosted bus.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watch loop

	mu      sync.Mutex // guards mirrors, ended and watched
	mirrors map[string]*mirror
	ended   map[string]time.Time // mirrored rooms that ended, for 410s
	watched map[*Feed]struct{}   // this node's feeds with viewers elsewhere
}

// NewCluster starts answering other nodes for this node's feeds and the
// loop that keeps mirrors watching; Close ends both.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{cfg: cfg, ctx: ctx, cancel: cancel, mirrors: make(map[string]*mirror),
		ended: make(map[string]time.Time), watched: make(map[*Feed]struct{})}
	sub, err := cfg.Bus.Subscribe(feedSubject+"."+cfg.Node+".*.*", c.serveHosted)
	if err != nil {
		cancel()
		return nil, err
	}
	c.hosted = sub
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.watchLoop()
	}()
	return c, nil
}

// Close stops serving and mirroring; mirrored feeds get no more events.
func (c *Cluster) Close() {
	c.cancel()
	c.wg.Wait()
	_ = c.hosted.Unsubscribe()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, m := range c.mirrors {
		_ = m.sub.Unsubscribe()
		delete(c.mirrors, id)
	}
}

// Feed finds a room's feed: this node's own, or a mirror of another
// node's room (created, or brought up to date, on the way). It returns
// ErrUnknownRoom or ErrRoomEnded for rooms without a feed.
func (c *Cluster) Feed(id string) (*Feed, error) {
	f, err := c.cfg.Local(id)
	if !errors.Is(err, ErrUnknownRoom) {
		return f, err
	}
	c.mu.Lock()
	m := c.mirrors[id]
	if m == nil {
		if _, ok := c.ended[id]; ok {
			c.mu.Unlock()
			return nil, ErrRoomEnded
		}
		node, ok := c.cfg.Host(id)
		if !ok {
			c.mu.Unlock()
			return nil, ErrUnknownRoom
		}
		if m, err = c.startMirror(id, node); err != nil {
			c.mu.Unlock()
			c.cfg.Logger.Warn("feed mirror", "room", id, "err", err)
			return nil, ErrUnknownRoom
		}
	}
	c.mu.Unlock()
	if m.feed.isClosed() { // as on the host: an ended room answers 410
		c.endMirror(m)
		return nil, ErrRoomEnded
	}
	m.lastViewer.Store(time.Now().UnixNano())
	if err := m.refresh(); err != nil {
		if errors.Is(err, ErrRoomEnded) {
			c.endMirror(m)
			return nil, ErrRoomEnded
		}
		if m.feed.isEmpty() { // never synced: there is nothing to show
			c.dropMirror(m)
			return nil, ErrUnknownRoom
		}
		c.cfg.Logger.Warn("feed mirror: sync", "room", id, "err", err)
	}
	return m.feed, nil
}

// Mirrors returns the number of rooms of other nodes mirrored here.
func (c *Cluster) Mirrors() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mirrors)
}

// watchLoop renews the watches of the mirrors with viewers, ends the
// mirrors of ended rooms and of lost nodes.
func (c *Cluster) watchLoop() {
	t := time.NewTicker(c.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		ms := make([]*mirror, 0, len(c.mirrors))
		for _, m := range c.mirrors {
			ms = append(ms, m)
		}
		now := time.Now()
		for id, at := range c.ended {
			if now.Sub(at) > KeepEnded {
				delete(c.ended, id)
			}
		}
		c.mu.Unlock()
		for _, m := range ms {
			c.tend(m, now)
		}
		c.expireWatches(now)
	}
}

// KeepEnded is how long the id of an ended room answers 410 (gone), on
// the node that hosted it and on the nodes that mirrored its feed.
const KeepEnded = time.Hour

// tend checks one mirror: ended, host lost, or watching to renew.
func (c *Cluster) tend(m *mirror, now time.Time) {
	if m.feed.isClosed() {
		c.endMirror(m)
		return
	}
	if node, ok := c.cfg.Host(m.room); !ok || node != m.node {
		// The directory no longer has the room there: ask the host, in
		// case only an update was missed.
		err := m.sync()
		switch {
		case errors.Is(err, ErrRoomEnded):
			c.endMirror(m)
		case err != nil:
			m.feed.Closed(ReasonNodeLost)
			c.endMirror(m)
		}
		return
	}
	if m.feed.Viewers() > 0 {
		m.lastViewer.Store(now.UnixNano())
	}
	if now.Sub(time.Unix(0, m.lastViewer.Load())) > c.cfg.Idle {
		m.stale.Store(true) // the host stops relaying: sync when a viewer comes
		return
	}
	req, _ := json.Marshal(watchRequest{Node: c.cfg.Node, Viewers: m.feed.Viewers()})
	if err := c.cfg.Bus.Publish(m.subject+".watch", req); err != nil {
		c.cfg.Logger.Debug("feed mirror: watch", "room", m.room, "err", err)
	}
}

// endMirror forgets a mirror whose room has ended; its id answers 410.
func (c *Cluster) endMirror(m *mirror) { c.forget(m, true) }

// dropMirror forgets a mirror that never got its room's state.
func (c *Cluster) dropMirror(m *mirror) { c.forget(m, false) }

// forget stops a mirror and, when its room has ended, keeps the id for 410s.
func (c *Cluster) forget(m *mirror, ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mirrors[m.room] == m {
		delete(c.mirrors, m.room)
		if ended {
			c.ended[m.room] = time.Now()
		}
	}
	_ = m.sub.Unsubscribe()
}

// serveHosted answers other nodes' syncs and watches of this node's rooms.
func (c *Cluster) serveHosted(msg *bus.Msg) {
	tokens := strings.Split(msg.Subject, ".")
	if len(tokens) != 5 {
		return
	}
	room, op := tokens[3], tokens[4]
	if op != "sync" && op != "watch" {
		return
	}
	var req watchRequest
	_ = json.Unmarshal(msg.Data, &req)
	f, err := c.cfg.Local(room)
	if err != nil {
		if op == "sync" {
			data, _ := json.Marshal(syncAnswer{Unknown: errors.Is(err, ErrUnknownRoom), Ended: errors.Is(err, ErrRoomEnded)})
			_ = msg.Respond(data)
		}
		return
	}
	subject := feedSubject + "." + c.cfg.Node + "." + room + ".ev"
	f.watch(time.Now().Add(c.cfg.Lease), func(e *Event) {
		if err := c.cfg.Bus.Publish(subject, encodeRelayed(e)); err != nil {
			c.cfg.Logger.Debug("feed relay", "room", room, "err", err)
		}
	})
	if req.Node != "" {
		f.setRemoteViewers(req.Node, req.Viewers, time.Now().Add(c.cfg.Lease))
		c.mu.Lock()
		c.watched[f] = struct{}{}
		c.mu.Unlock()
	}
	if op == "sync" {
		data, _ := json.Marshal(f.syncPage(req.After))
		_ = msg.Respond(data)
	}
}

// expireWatches forgets the viewers of nodes that stopped watching.
func (c *Cluster) expireWatches(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for f := range c.watched {
		if !f.expireRemoteViewers(now) {
			delete(c.watched, f)
		}
	}
}

// startMirror subscribes to a room's events; the mirror is stale until
// its first sync. c.mu is held.
func (c *Cluster) startMirror(room, node string) (*mirror, error) {
	m := &mirror{room: room, node: node, self: c.cfg.Node, subject: feedSubject + "." + node + "." + room, bus: c.cfg.Bus}
	m.feed = New(c.cfg.Feed, nil)
	m.stale.Store(true)
	sub, err := c.cfg.Bus.Subscribe(m.subject+".ev", m.onEvent)
	if err != nil {
		return nil, err
	}
	m.sub = sub
	c.mirrors[room] = m
	return m, nil
}

// mirror is this node's copy of another node's room feed.
type mirror struct {
	room, node string // the room, and the node hosting it
	self       string // this node
	subject    string // feedSubject.node.room
	bus        bus.Bus
	feed       *Feed
	sub        bus.Subscription
	stale      atomic.Bool  // events may have been missed: sync before reading
	lastViewer atomic.Int64 // unix nanoseconds when it last had a viewer

	syncMu sync.Mutex // one sync at a time

	mu      sync.Mutex // guards synced and pending
	synced  bool       // events apply at once; else they wait in pending
	pending []relayed
}

// refresh syncs the mirror if it may have missed events.
func (m *mirror) refresh() error {
	if !m.stale.Load() {
		return nil
	}
	return m.sync()
}

// onEvent applies an event the host relayed, or keeps it while a sync is
// under way; a gap starts a sync.
func (m *mirror) onEvent(msg *bus.Msg) {
	e, ok := decodeRelayed(msg.Data)
	if !ok {
		return
	}
	m.mu.Lock()
	if !m.synced {
		m.pending = append(m.pending, e)
		m.mu.Unlock()
		return
	}
	applied := m.feed.apply(e)
	m.mu.Unlock()
	if !applied {
		m.stale.Store(true)
		_ = m.refresh()
	}
}

// syncTimeout bounds one sync request.
const syncTimeout = 3 * time.Second

// sync fetches the host's state of the feed, page by page, loads it, and
// applies the events relayed meanwhile.
func (m *mirror) sync() error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.mu.Lock()
	m.synced, m.pending = false, nil
	m.mu.Unlock()
	var st syncAnswer
	after := uint64(0)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		req, _ := json.Marshal(watchRequest{Node: m.self, Viewers: m.feed.Viewers(), After: after})
		data, err := m.bus.Request(ctx, m.subject+".sync", req)
		cancel()
		if err != nil {
			return err
		}
		var page syncAnswer
		if err := json.Unmarshal(data, &page); err != nil {
			return err
		}
		switch {
		case page.Ended:
			return ErrRoomEnded
		case page.Unknown:
			return ErrUnknownRoom
		}
		history := append(st.History, page.History...)
		evicted := st.Evicted
		if after == 0 {
			evicted = page.Evicted
		}
		st, st.History, st.Evicted = page, history, evicted
		if !page.More || len(page.History) == 0 {
			break
		}
		after = page.History[len(page.History)-1].ID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.feed.load(&st)
	for _, e := range m.pending {
		if e.id >= m.feed.expected() && !m.feed.apply(e) {
			m.pending = nil
			return errors.New("feed mirror: events missed during the sync")
		}
	}
	m.synced, m.pending = true, nil
	m.stale.Store(false)
	return nil
}

// relayed is an event as a mirror receives it.
type relayed struct {
	id   uint64
	typ  string
	data []byte
}

// encodeRelayed writes "<id> <type> <data>".
func encodeRelayed(e *Event) []byte {
	b := make([]byte, 0, len(e.Data)+len(e.Type)+24)
	b = strconv.AppendUint(b, e.ID, 10)
	b = append(b, ' ')
	b = append(b, e.Type...)
	b = append(b, ' ')
	return append(b, e.Data...)
}

func decodeRelayed(b []byte) (relayed, bool) {
	id, rest, ok := bytes.Cut(b, []byte{' '})
	if !ok {
		return relayed{}, false
	}
	typ, data, ok := bytes.Cut(rest, []byte{' '})
	n, err := strconv.ParseUint(string(id), 10, 64)
	if !ok || err != nil || !json.Valid(data) {
		return relayed{}, false
	}
	return relayed{id: n, typ: string(typ), data: bytes.Clone(data)}, true
}

// watchRequest renews a watch (and with After, asks for the feed's state
// with the history after that id): which node watches, and how many
// viewers it has, counted among the room's spectators.
type watchRequest struct {
	Node    string `json:"node"`
	Viewers int    `json:"viewers"`
	After   uint64 `json:"after,omitempty"`
}

// syncAnswer is a feed's state, or why there is none.
type syncAnswer struct {
	Unknown bool `json:"unknown,omitempty"` // no such room on the host
	Ended   bool `json:"ended,omitempty"`   // the room has ended

	Info    wire.SpectatorRoom `json:"info"`
	InfoID  uint64             `json:"infoId"`
	NextID  uint64             `json:"nextId"`
	Evicted uint64             `json:"evicted"`
	Closed  bool               `json:"closed,omitempty"`
	History []syncEvent        `json:"history"` // reliable events after the request's id
	More    bool               `json:"more,omitempty"`
	Recent  []syncEvent        `json:"recent"`
	Snap    *syncEvent         `json:"snap,omitempty"`
	Orig    uint64             `json:"orig,omitempty"` // the id Snap was first published with
}

// syncEvent is an event in a sync answer.
type syncEvent struct {
	ID   uint64          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func toSync(e *Event) syncEvent { return syncEvent{ID: e.ID, Type: e.Type, Data: e.Data} }

func fromSync(e syncEvent) *Event { return newEvent(e.ID, e.Type, e.Data) }

// watch has the feed relay its events with relay until `until`; a
// snapshot kept for want of viewers is published now.
func (f *Feed) watch(until time.Time, relay func(*Event)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.relay == nil {
		f.relay = relay
	}
	f.watched.Store(until.UnixNano())
	if f.pending && !f.closed {
		f.publishSnapLocked()
	}
}

// setRemoteViewers records how many viewers a node watching the feed has,
// until `until`, and counts them as the room's spectators.
func (f *Feed) setRemoteViewers(node string, n int, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.remote == nil {
		f.remote = make(map[string]remoteViewers)
	}
	old := f.remote[node].n
	f.remote[node] = remoteViewers{n: n, until: until}
	if f.onViewer != nil && n != old {
		f.onViewer(n - old)
	}
}

// expireRemoteViewers forgets the nodes whose watch has run out and
// reports whether any node still watches.
func (f *Feed) expireRemoteViewers(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for node, r := range f.remote {
		if now.After(r.until) {
			delete(f.remote, node)
			if f.onViewer != nil && r.n != 0 {
				f.onViewer(-r.n)
			}
		}
	}
	return len(f.remote) > 0
}

// watchedRemotely reports whether another node watches the feed now.
func (f *Feed) watchedRemotely() bool {
	return time.Now().UnixNano() < f.watched.Load()
}

// syncPage returns the feed's state with the reliable events after an id,
// as many as fit in a page.
func (f *Feed) syncPage(after uint64) syncAnswer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stateLocked(after, syncPageBytes)
}

// stateLocked returns the feed's state with the reliable events after an
// id, at most about maxBytes of them (at least one). f.mu is held.
func (f *Feed) stateLocked(after uint64, maxBytes int) syncAnswer {
	a := syncAnswer{
		Info: f.info, InfoID: f.infoID, NextID: f.nextID, Evicted: f.evicted, Closed: f.closed,
		History: []syncEvent{}, Recent: []syncEvent{},
	}
	a.Info.Players = slices.Clone(f.info.Players)
	size := 0
	for _, e := range f.history[firstAfter(f.history, after):] {
		if size += len(e.Data); size > maxBytes && len(a.History) > 0 {
			a.More = true
			break
		}
		a.History = append(a.History, toSync(e))
	}
	for _, e := range f.recent {
		a.Recent = append(a.Recent, toSync(e))
	}
	if f.snap != nil {
		s := toSync(f.snap)
		a.Snap, a.Orig = &s, f.snapOrig
	}
	return a
}

// load replaces the feed's state with a host's and wakes its viewers.
func (f *Feed) load(a *syncAnswer) {
	f.mu.Lock()
	f.info, f.infoID, f.nextID, f.evicted, f.closed = a.Info, a.InfoID, a.NextID, a.Evicted, a.Closed
	history := make([]*Event, 0, len(a.History))
	for _, e := range a.History {
		history = append(history, fromSync(e))
	}
	f.replaceHistoryLocked(history)
	f.end, f.tip = nil, 0
	if n := len(f.history); n > 0 {
		f.tip = f.history[n-1].ID
		if f.closed && f.history[n-1].Type == wire.EventClosed {
			f.end = f.history[n-1]
		}
	}
	f.recent = f.recent[:0]
	for _, e := range a.Recent {
		f.recent = append(f.recent, fromSync(e))
		f.tip = max(f.tip, e.ID)
	}
	f.snap, f.snapOrig = nil, 0
	if a.Snap != nil {
		f.snap, f.snapOrig = fromSync(*a.Snap), a.Orig
	}
	f.lastPub = time.Now()
	if f.waiting { // a delayed feed's first state
		f.waiting = false
		f.start = f.startOverLocked()
		f.startLast = f.start[len(f.start)-1].ID
	}
	if f.delay != nil { // the delayed feeds start again from this state
		st := f.stateLocked(0, math.MaxInt)
		f.delay.push(delayItem{at: f.lastPub, state: &st, size: st.size()})
	}
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
	f.acct.b.settle()
}

// expected returns the id the next relayed event must have.
func (f *Feed) expected() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextID
}

// apply publishes a relayed event in a mirror, as the host did; it
// returns false, changing nothing, when the event is not the next one.
func (f *Feed) apply(e relayed) bool {
	f.mu.Lock()
	ok := f.applyLocked(e)
	f.mu.Unlock()
	f.acct.b.settle()
	return ok
}

func (f *Feed) applyLocked(e relayed) bool {
	if f.closed || e.id != f.nextID {
		return f.closed
	}
	return f.applyEventLocked(newEvent(e.id, e.typ, e.data))
}

// applyEventLocked publishes an event of the feed this one copies (a
// host's, or the live feed a delayed one plays late), under its id, as
// that feed did; it returns false, changing nothing, when the event is not
// the next one.
func (f *Feed) applyEventLocked(e *Event) bool {
	if f.closed || e.ID != f.nextID {
		return f.closed
	}
	switch e.Type {
	case wire.EventJoined:
		var m wire.Joined
		if json.Unmarshal(e.Data, &m) == nil {
			f.joinedLocked(&m)
		}
	case wire.EventLeft:
		var m wire.Left
		if json.Unmarshal(e.Data, &m) == nil {
			f.leftLocked(&m)
		}
	}
	f.publishEventLocked(e)
	if e.Type == wire.EventClosed {
		f.closed = true
	}
	return true
}

// isClosed reports whether the feed has ended.
func (f *Feed) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// isEmpty reports whether the feed has never had an event nor room info.
func (f *Feed) isEmpty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextID == 1 && f.info.ID == ""
}
