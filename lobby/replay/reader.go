package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/tickwire/tickwire/wire"
)

// blockRef is a good block of a file and what its head says.
type blockRef struct {
	frameRef
	blockHead
}

// fileIndex is what a scan of a recording found: its header and blocks,
// up to the end of its good frames.
type fileIndex struct {
	hdr      header
	blocks   []blockRef
	end      int64 // just past the last good frame
	lastOrd  uint64
	ticks    uint64
	lastTick uint64
	endMS    int64
	closed   bool // the `closed` record is in: nothing follows
	damaged  bool // a frame after end is bad, or a block out of order
}

// index scans a recording from its start.
func index(r io.ReaderAt, size int64) (*fileIndex, error) {
	var m [len(magic)]byte
	if size < int64(len(magic)) {
		return nil, errDamaged
	}
	if _, err := r.ReadAt(m[:], 0); err != nil || string(m[:]) != magic {
		return nil, errDamaged
	}
	x := &fileIndex{end: int64(len(magic))}
	first := true
	x.end, x.damaged = scanFrames(r, x.end, size, func(ref frameRef, p []byte) error {
		if !first {
			return x.addBlock(ref, p)
		}
		h, err := parseHeader(p)
		if err != nil {
			return err
		}
		first = false
		x.hdr, x.endMS = h, h.Start
		return nil
	})
	if first {
		return nil, errDamaged // no good header
	}
	return x, nil
}

// extend scans the blocks from x.end to size.
func (x *fileIndex) extend(r io.ReaderAt, size int64) {
	if x.closed || x.damaged || size <= x.end {
		return
	}
	x.end, x.damaged = scanFrames(r, x.end, size, x.addBlock)
}

// addBlock adds a good frame to the index, or refuses a block that does
// not follow the ones before it.
func (x *fileIndex) addBlock(ref frameRef, p []byte) error {
	if x.closed {
		return errDamaged // nothing may follow the end
	}
	h, _, err := parseBlockHead(p)
	if err != nil || h.firstOrd != x.lastOrd+1 || h.ticks > 0 && x.ticks > 0 && h.firstTick <= x.lastTick {
		return errDamaged
	}
	x.blocks = append(x.blocks, blockRef{ref, h})
	x.lastOrd += h.records
	if h.ticks > 0 {
		x.ticks += h.ticks
		x.lastTick = h.lastTick
	}
	x.endMS = max(x.endMS, h.endMS)
	x.closed = h.flags&flagClosed != 0
	if x.closed {
		x.endMS = h.endMS // the close time
	}
	return nil
}

// firstTick returns the first tick recorded, 0 when none is.
func (x *fileIndex) firstTick() uint64 {
	for _, b := range x.blocks {
		if b.ticks > 0 {
			return b.firstTick
		}
	}
	return 0
}

// summary is the listing of a finished recording.
func (x *fileIndex) summary() Summary {
	return Summary{Room: x.hdr.Room, Mode: x.hdr.Mode, Start: x.hdr.Start, End: x.endMS, Ticks: x.ticks, Hz: x.hdr.Hz}
}

// ReasonEnd is the reason of the `closed` event that ends every replay.
const ReasonEnd = "end-of-replay"

// Event is one event of a replay, as the spectator feed has it: Type is a
// wire.Event* and Data its JSON data. Data and Tables must not be
// modified: the readers of a store share them.
type Event struct {
	// ID increases within a replay: each event's is its record's ordinal
	// in the recording (a `room` event takes the one before the event
	// after it), so the ids of a replay do not depend on where it started.
	ID   uint64
	Type string
	// N is the tick: a snapshot's own, or for other events that of the
	// snapshot before them (0 before the first).
	N uint64
	// ST is the server time of the tick or chat line (Unix ms), 0 for other
	// events.
	ST   int64
	Data []byte
	// LiveID is the id the live spectator feed gave a joined, left or chat
	// event (0 when unknown).
	LiveID uint64
	// Tables are a snapshot's tables in the schema's order, every value
	// a whole number of its column's steps.
	Tables []wire.Table

	sse []byte // the event as a Server-Sent Event, when encoded; Data is within it
}

// Reader plays one recording from a point: Seek or ResumeAfter, then Next
// until io.EOF. It follows a recording that is still being written. A
// Reader is not safe for concurrent use; Close it when done.
type Reader struct {
	f     *os.File
	store *Store
	room  string
	x     *fileIndex
	codec *wire.DeltaCodec // nil when the room has no schema

	// The position.
	started bool          // the first event was chosen
	from    uint64        // Seek: the first tick to send
	after   int64         // ResumeAfter: the last id the viewer has; -1: a Seek
	bi      int           // index of the next block to load
	blk     *decodedBlock // the current block
	ei      int           // index in blk.events of the next event
	n       uint64        // the tick of the last event read
	ord     uint64        // ordinal of the last record read
	emit    bool          // past the starting point: events are sent
	ended   bool          // the `closed` event was returned
	broken  bool          // a block read back differs from its scan: nothing after it is read

	// The decoder: decodedLast is the block it decoded last; its state
	// is that after that block.
	decodedLast *decodedBlock
	frame       []byte
	body        []byte
	states      [2]wire.DeltaState
	cur         int  // states[cur] is the newest tick's
	hasTick     bool // states[cur] holds a tick
	players     []wire.PlayerInfo
	queue       []Event
}

func newReader(f *os.File, s *Store, room string) (*Reader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	x, err := index(f, fi.Size())
	if err != nil {
		return nil, ErrNotFound
	}
	r := &Reader{f: f, store: s, room: room, x: x, after: -1}
	if sc := x.hdr.Info.Schema; sc != nil {
		r.codec = wire.NewDeltaCodec(sc, x.hdr.Hz)
	}
	return r, nil
}

// Summary returns the recording's listing as far as the reader has seen.
func (r *Reader) Summary() Summary {
	s := r.x.summary()
	if live, _ := r.live(); live {
		s.End = 0
	}
	return s
}

// Room returns the room's info as it opened.
func (r *Reader) Room() wire.SpectatorRoom { return r.x.hdr.Info }

// Close closes the recording's file.
func (r *Reader) Close() error { return r.f.Close() }

// Seek makes the replay start at tick from: the next events are `room`
// (the room as it was then) and the snapshot of the first tick at or after
// from, then what followed. A from at or before the first tick recorded
// (0, the default) plays the whole recording: `room` as the room opened
// (id 0), then every event, those before the first tick included.
// Decoding starts from the keyframe at or before from. It must be called
// before Next.
func (r *Reader) Seek(from uint64) {
	r.from, r.after = from, -1
}

// ResumeAfter makes the replay go on after the event with id `after`
// (a viewer's Last-Event-ID): the next events are those with higher ids,
// without a `room` event. It must be called before Next.
func (r *Reader) ResumeAfter(after uint64) {
	r.after = int64(min(after, 1<<62))
}

// live reports whether the recording is being written, and the channel
// closed at its next write.
func (r *Reader) live() (bool, <-chan struct{}) {
	if r.store == nil {
		return false, nil
	}
	return r.store.follow(r.room)
}

// start picks the block replay starts from: the newest keyframe block at
// or before the starting point, else the file's start.
func (r *Reader) start() {
	r.started = true
	r.players = slices.Clone(r.x.hdr.Info.Players)
	if r.after < 0 && r.from <= r.x.firstTick() {
		// From the start: the room as it opened, then every record.
		r.emit = true
		r.queue = append(r.queue, r.roomEvent(0, 0))
		return
	}
	for i := len(r.x.blocks) - 1; i > 0; i-- {
		b := &r.x.blocks[i]
		if b.flags&flagKey == 0 {
			continue
		}
		if r.after >= 0 && b.firstOrd <= uint64(r.after)+1 || r.after < 0 && b.firstTick <= r.from {
			r.bi = i
			r.ord = b.firstOrd - 1
			return
		}
	}
}

// Next returns the next event of the replay; after the last one, a
// `closed` event with reason ReasonEnd, it returns io.EOF. A recording
// still being written is followed: Next waits for more until ctx ends.
// A damaged part of the file ends the replay there. A call cut short by
// ctx may be made again: the replay goes on where it was.
func (r *Reader) Next(ctx context.Context) (*Event, error) {
	if !r.started {
		r.start()
	}
	for len(r.queue) == 0 {
		if r.ended {
			return nil, io.EOF
		}
		if err := r.step(ctx); err != nil {
			return nil, err
		}
	}
	e := r.queue[0]
	r.queue = r.queue[1:]
	return &e, nil
}

// step reads one event of the current block, or moves to the next block,
// and queues what it sends.
func (r *Reader) step(ctx context.Context) error {
	if r.blk == nil || r.ei == len(r.blk.events) {
		if b := r.blk; b != nil {
			r.ord = b.endOrd
			if b.closed || b.broken {
				r.end(b.closed)
				return nil
			}
		}
		b, err := r.nextBlock(ctx)
		if err != nil {
			return err
		}
		if b == nil {
			r.end(false)
			return nil
		}
		r.blk, r.ei = b, 0
		return nil
	}
	ce := &r.blk.events[r.ei]
	r.ei++
	r.ord, r.n, r.players = ce.ID, ce.N, ce.players
	ev := ce.Event
	if !r.emit {
		switch {
		case r.after >= 0 && ev.ID > uint64(r.after):
			r.emit = true
		case r.after < 0 && ev.Type == wire.EventSnap && ev.N >= r.from:
			r.emit = true
			r.queue = append(r.queue, r.roomEvent(ev.ID-1, ev.N))
		default:
			return nil
		}
	}
	r.queue = append(r.queue, ev)
	return nil
}

// nextBlock returns the next block's events, from the store's cache or
// decoded here, waiting for more of a recording being written; nil when
// there is no more.
func (r *Reader) nextBlock(ctx context.Context) (*decodedBlock, error) {
	for r.bi >= len(r.x.blocks) {
		if r.broken {
			return nil, nil
		}
		more, err := r.more(ctx)
		if err != nil || !more {
			return nil, err
		}
	}
	if r.broken {
		return nil, nil
	}
	i := r.bi
	ref := &r.x.blocks[i]
	var c *blockCache
	if r.store != nil {
		c = r.store.cache
	}
	key := blockKey{path: r.f.Name(), start: r.x.hdr.Start, off: ref.off}
	b := c.get(key, ref, func(b *decodedBlock) { r.decodeBlock(i, b) })
	if !b.ok {
		r.broken = true // damaged since the scan: the replay ends here
		return nil, nil
	}
	r.bi++
	return b, nil
}

// decodeBlock decodes block i into b, going on from the state after the
// current block (which may be another reader's, from the cache).
func (r *Reader) decodeBlock(i int, b *decodedBlock) {
	if p := r.blk; p != nil && r.decodedLast != p {
		r.hasTick = p.hasTick
		if p.hasTick {
			copyState(&r.states[r.cur], &p.state)
		}
	}
	r.decodedLast = b
	recs, ok := r.load(i)
	if !ok {
		return
	}
	b.ok = true
	// A block's records are counted by its head; the reader trusts the
	// ordinals of the head over a count of what it read.
	ord := b.head.firstOrd - 1
	players := r.players
	defer func() {
		b.endOrd, b.players, b.hasTick = ord, players, r.hasTick
		if r.hasTick {
			copyState(&b.state, &r.states[r.cur])
		}
	}()
	for len(recs) > 0 {
		typ, p, rest, err := nextRecord(recs)
		if err != nil {
			b.broken = true
			return
		}
		recs = rest
		if typ == recClosed {
			b.closed = true
			return
		}
		ord++
		ev := Event{ID: ord, N: r.tick()}
		switch typ {
		case recKey, recTick:
			d := p
			if typ == recKey {
				v := wire.NewVarintReader(p)
				list := v.Bytes()
				var ps []wire.PlayerInfo
				if v.Err() != nil || json.Unmarshal(list, &ps) != nil {
					b.broken = true
					return
				}
				players, d = ps, v.Rest()
			}
			if !r.decode(d) {
				b.broken = true
				return
			}
			s := &r.states[r.cur]
			ev.Type, ev.N, ev.ST = wire.EventSnap, s.N, s.ST
			r.snapEvent(&ev)
		case recJoined, recLeft, recChat:
			v := wire.NewVarintReader(p)
			ev.LiveID = v.Uvarint()
			ev.Data = v.Rest()
			if v.Err() != nil || !event(typ, &ev, &players) {
				b.broken = true
				return
			}
		default:
			continue // a record type of a later version: skipped
		}
		encodeSSE(&ev)
		b.events = append(b.events, cachedEvent{Event: ev, players: players})
	}
}

// copyState makes dst a copy of src.
func copyState(dst, src *wire.DeltaState) {
	dst.N, dst.ST = src.N, src.ST
	dst.T = slices.Grow(dst.T[:0], len(src.T))[:len(src.T)]
	for i, t := range src.T {
		dst.T[i].Cols = t.Cols
		dst.T[i].Q = append(dst.T[i].Q[:0], t.Q...)
	}
}

// tick returns the newest tick decoded, 0 before any.
func (r *Reader) tick() uint64 {
	if !r.hasTick {
		return 0
	}
	return r.states[r.cur].N
}

// decode applies a tick record's delta.
func (r *Reader) decode(d []byte) bool {
	if r.codec == nil {
		return false
	}
	prev := r.cur
	next := &r.states[1-r.cur]
	base := func(n uint64) *wire.DeltaState {
		if r.hasTick && r.states[prev].N == n {
			return &r.states[prev]
		}
		return nil
	}
	if r.codec.Decode(d, base, next) != nil || r.hasTick && next.N <= r.states[prev].N {
		return false
	}
	r.cur, r.hasTick = 1-r.cur, true
	return true
}

// event checks a joined, left or chat event and follows the players
// (making a new slice when they change).
func event(typ byte, ev *Event, players *[]wire.PlayerInfo) bool {
	switch typ {
	case recJoined:
		var m wire.Joined
		if json.Unmarshal(ev.Data, &m) != nil {
			return false
		}
		ev.Type = wire.EventJoined
		*players = append(slices.Clip(*players), wire.PlayerInfo{ID: m.ID, Name: m.Name})
	case recLeft:
		var m wire.Left
		if json.Unmarshal(ev.Data, &m) != nil {
			return false
		}
		ev.Type = wire.EventLeft
		*players = slices.DeleteFunc(slices.Clone(*players), func(p wire.PlayerInfo) bool { return p.ID == m.ID })
	case recChat:
		var m wire.ChatLine
		if json.Unmarshal(ev.Data, &m) != nil {
			return false
		}
		ev.Type, ev.ST = wire.EventChat, m.ST
	}
	return true
}

// roomEvent is the `room` event of the room as it is now.
func (r *Reader) roomEvent(id, n uint64) Event {
	info := r.x.hdr.Info
	info.Players = slices.Clone(r.players)
	if info.Players == nil {
		info.Players = []wire.PlayerInfo{}
	}
	data, _ := json.Marshal(info)
	return Event{ID: id, Type: wire.EventRoom, N: n, Data: data}
}

// snapEvent fills a snapshot event's tables and data from the newest tick.
func (r *Reader) snapEvent(ev *Event) {
	s := &r.states[r.cur]
	sc := r.x.hdr.Info.Schema
	tables := wire.NewTables(sc)
	for ti := range tables {
		t, q := &tables[ti], &s.T[ti]
		cols := sc.Tables[ti].Columns
		t.Data = t.Data[:0]
		for i, v := range q.Q {
			c := i % t.Cols
			if c == 0 {
				t.Data = append(t.Data, float64(v))
			} else {
				t.Data = append(t.Data, wire.Dequantize(v, cols[c].Step))
			}
		}
	}
	ev.Data, ev.Tables = wire.AppendSnapJSON(nil, s.N, s.ST, sc, tables), tables
}

// end queues the last events: `room` when none was sent yet (a Seek past
// the end), then `closed`.
func (r *Reader) end(closedRecord bool) {
	id := r.ord + 1
	if closedRecord {
		r.ord++
		id = r.ord
	}
	if !r.emit && r.after < 0 {
		r.queue = append(r.queue, r.roomEvent(id-1, r.n))
	}
	data, _ := json.Marshal(wire.SpectatorClosed{Reason: ReasonEnd})
	r.queue = append(r.queue, Event{ID: id, Type: wire.EventClosed, N: r.n, Data: data})
	r.emit, r.ended = true, true
}

// load reads block i's records; false when it does not read back as
// scanned.
func (r *Reader) load(i int) ([]byte, bool) {
	b := &r.x.blocks[i]
	buf, err := readFrame(r.f, b.frameRef, r.frame)
	if err != nil {
		return nil, false
	}
	r.frame = buf
	p := buf[frameHead:]
	h, body, err := parseBlockHead(p)
	if err != nil || h != b.blockHead {
		return nil, false
	}
	if h.flags&flagFlate != 0 {
		if body, err = inflate(r.body, body); err != nil {
			return nil, false
		}
		r.body = body
	}
	return body, true
}

// more looks for blocks written since the last scan, waiting for them while
// the recording is being written. It reports whether there are any.
func (r *Reader) more(ctx context.Context) (bool, error) {
	for !r.x.closed && !r.broken {
		live, next := r.live()
		// What stopped the last scan may have been a frame being written:
		// read on from there (a damaged frame stops this scan as well).
		r.x.damaged = false
		n := len(r.x.blocks)
		fi, err := r.f.Stat()
		if err != nil {
			return false, fmt.Errorf("replay: %w", err)
		}
		r.x.extend(r.f, fi.Size())
		if len(r.x.blocks) > n {
			return true, nil
		}
		if !live {
			return false, nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return false, nil
}
