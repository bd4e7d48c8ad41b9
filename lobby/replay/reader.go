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
// wire.Event* and Data its JSON data. Data and Tables are valid until the
// next call of Next.
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
	started bool   // the first event was chosen
	from    uint64 // Seek: the first tick to send
	after   int64  // ResumeAfter: the last id the viewer has; -1: a Seek
	bi      int    // index of the next block to load
	recs    []byte // the records of the current block not read yet
	ord     uint64 // ordinal of the last record read
	emit    bool   // past the starting point: events are sent
	ended   bool   // the `closed` event was returned
	broken  bool   // a block read back differs from its scan: nothing after it is read

	frame   []byte
	body    []byte
	states  [2]wire.DeltaState
	cur     int  // states[cur] is the newest tick's
	hasTick bool // states[cur] holds a tick
	players []wire.PlayerInfo
	tables  []wire.Table
	queue   []Event
	snapBuf []byte
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
		r.tables = wire.NewTables(sc)
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

// step reads one record and queues what it sends.
func (r *Reader) step(ctx context.Context) error {
	typ, p, err := r.record(ctx)
	if err != nil {
		return err
	}
	if typ == 0 || typ == recClosed {
		r.end(typ == recClosed)
		return nil
	}
	r.ord++
	ev := Event{ID: r.ord, N: r.tick()}
	switch typ {
	case recKey, recTick:
		d := p
		if typ == recKey {
			v := &varints{b: p}
			players := v.bytes()
			var list []wire.PlayerInfo
			if v.bad || json.Unmarshal(players, &list) != nil {
				r.end(false)
				return nil
			}
			r.players, d = list, v.b
		}
		if !r.decode(d) {
			r.end(false)
			return nil
		}
		s := &r.states[r.cur]
		ev.Type, ev.N, ev.ST = wire.EventSnap, s.N, s.ST
	case recJoined, recLeft, recChat:
		v := &varints{b: p}
		ev.LiveID = v.u()
		ev.Data = v.b
		if v.bad || !r.event(typ, &ev) {
			r.end(false)
			return nil
		}
	default:
		return nil // a record type of a later version: skipped
	}
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
	if ev.Type == wire.EventSnap {
		r.snapEvent(&ev)
	}
	r.queue = append(r.queue, ev)
	return nil
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

// event checks a joined, left or chat event and follows the players.
func (r *Reader) event(typ byte, ev *Event) bool {
	switch typ {
	case recJoined:
		var m wire.Joined
		if json.Unmarshal(ev.Data, &m) != nil {
			return false
		}
		ev.Type = wire.EventJoined
		r.players = append(r.players, wire.PlayerInfo{ID: m.ID, Name: m.Name})
	case recLeft:
		var m wire.Left
		if json.Unmarshal(ev.Data, &m) != nil {
			return false
		}
		ev.Type = wire.EventLeft
		r.players = slices.DeleteFunc(r.players, func(p wire.PlayerInfo) bool { return p.ID == m.ID })
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
	for ti := range r.tables {
		t, q := &r.tables[ti], &s.T[ti]
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
	r.snapBuf = wire.AppendSnapJSON(r.snapBuf[:0], s.N, s.ST, sc, r.tables)
	ev.Data, ev.Tables = r.snapBuf, r.tables
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
		r.queue = append(r.queue, r.roomEvent(id-1, r.tick()))
	}
	data, _ := json.Marshal(wire.SpectatorClosed{Reason: ReasonEnd})
	r.queue = append(r.queue, Event{ID: id, Type: wire.EventClosed, N: r.tick(), Data: data})
	r.emit, r.ended = true, true
}

// record returns the next record, loading blocks as needed and waiting
// for more of a recording being written; type 0 when there is no more.
func (r *Reader) record(ctx context.Context) (byte, []byte, error) {
	for len(r.recs) == 0 {
		if r.broken {
			return 0, nil, nil
		}
		if r.bi >= len(r.x.blocks) {
			more, err := r.more(ctx)
			if err != nil || !more {
				return 0, nil, err
			}
			continue
		}
		if !r.load(r.bi) {
			r.broken = true // damaged since the scan: the replay ends here
			return 0, nil, nil
		}
		r.bi++
	}
	typ, p, rest, err := nextRecord(r.recs)
	if err != nil {
		r.recs, r.broken = nil, true
		return 0, nil, nil
	}
	r.recs = rest
	return typ, p, nil
}

// load reads block i's records.
func (r *Reader) load(i int) bool {
	b := &r.x.blocks[i]
	buf, err := readFrame(r.f, b.frameRef, r.frame)
	if err != nil {
		return false
	}
	r.frame = buf
	p := buf[frameHead:]
	h, body, err := parseBlockHead(p)
	if err != nil || h != b.blockHead {
		return false
	}
	if h.flags&flagFlate != 0 {
		if body, err = inflate(r.body, body); err != nil {
			return false
		}
		r.body = body
	}
	r.recs = body
	// A block's records are counted by its head; the reader trusts the
	// ordinals of the head over a count of what it read.
	r.ord = h.firstOrd - 1
	return true
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
