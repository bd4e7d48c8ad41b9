package replay

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// RecordOptions set one recording.
type RecordOptions struct {
	// LiveID, when set, returns the id the room's live spectator feed gave
	// the event it published last; the Recorder calls it after each
	// joined, left and chat event (the feed must see them first, as
	// room.Observers does when the feed comes before the Recorder) and
	// keeps the id with the event.
	LiveID func() uint64
}

// Recorder records one room. It implements room.Observer: its methods are
// called on the room goroutine and never block on the disk; they encode
// the event and hand the bytes to the recorder's writer goroutine, which
// compresses and appends them to the file at least every
// Config.FlushEvery. Close is safe to call from any goroutine.
type Recorder struct {
	s      *Store
	e      *entry
	f      *os.File
	liveID func() uint64
	kick   chan struct{} // wakes the writer (capacity 1)
	done   chan struct{} // closed when the writer has ended

	// Owned by the room goroutine.
	codec    *wire.DeltaCodec
	states   [2]wire.DeltaState
	cur      int    // states[cur] is the next tick's; states[1-cur] the previous one's
	hasPrev  bool   // states[1-cur] was handed to the writer
	lastKey  uint64 // tick of the newest keyframe
	keyEvery uint64 // ticks between keyframes
	players  []wire.PlayerInfo
	rec      []byte // the payload of the record being built

	mu      sync.Mutex // guards the fields below
	pend    []byte     // records handed over, not yet taken by the writer
	ending  bool       // no more records: the writer finishes
	dropped int64

	overflow atomic.Bool // a record was dropped: the next tick must be a keyframe

	// Kept by the writer, read by Stats.
	ticks   atomic.Uint64
	written atomic.Int64
	lastN   atomic.Uint64 // newest tick on disk
}

func newRecorder(s *Store, e *entry, f *os.File, opts RecordOptions) *Recorder {
	return &Recorder{s: s, e: e, f: f, liveID: opts.LiveID, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// Stats are a recording's counters.
type Stats struct {
	Ticks   uint64 // ticks written to the file
	LastN   uint64 // the newest tick written
	Bytes   int64  // bytes written
	Dropped int64  // records dropped because the writer fell behind (see Config.MaxPending)
}

// Stats returns the recording's counters.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	dropped := r.dropped
	r.mu.Unlock()
	return Stats{Ticks: r.ticks.Load(), LastN: r.lastN.Load(), Bytes: r.written.Load(), Dropped: dropped}
}

// Done is closed when the recording's file is complete and closed.
func (r *Recorder) Done() <-chan struct{} { return r.done }

// hand queues a record of type typ with payload for the writer; it
// reports false when the record was dropped (the writer is too far behind,
// or the recording has ended).
func (r *Recorder) hand(typ byte, payload []byte) bool {
	var l [binary.MaxVarintLen64]byte
	size := 1 + binary.PutUvarint(l[:], uint64(len(payload))) + len(payload)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ending {
		return false
	}
	if len(r.pend)+size > r.s.cfg.MaxPending {
		if r.dropped++; r.dropped == 1 {
			r.s.cfg.Logger.Warn("replay: the recording's writer is behind: records dropped", "room", r.e.sum.Room)
		}
		r.overflow.Store(true)
		return false
	}
	r.pend = appendRecord(r.pend, typ, payload)
	return true
}

// Opened starts the recording with the room's info. It implements
// room.Observer.
func (r *Recorder) Opened(info wire.SpectatorRoom) {
	r.players = slices.Clone(info.Players)
	if info.Schema != nil && info.Hz > 0 {
		r.codec = wire.NewDeltaCodec(info.Schema, info.Hz)
		r.keyEvery = uint64(max(1, r.s.cfg.KeyframeEvery.Seconds()*float64(info.Hz)))
	}
	hz := max(info.Hz, 1)
	h := header{Version: 1, Room: r.e.sum.Room, Mode: info.Mode, Hz: hz, Start: r.s.nextStart(time.Now()), Info: info}
	r.s.mu.Lock()
	r.e.sum.Mode, r.e.sum.Hz, r.e.sum.Start = h.Mode, h.Hz, h.Start
	r.s.mu.Unlock()
	b, _ := json.Marshal(h)
	r.hand(recHeader, b)
}

// Snap records the tick: a keyframe every Config.KeyframeEvery, otherwise
// a delta against the previous tick, both quantized to the schema's steps.
// It implements room.Observer.
func (r *Recorder) Snap(n uint64, st int64, tables []wire.Table) {
	if r.codec == nil || n == 0 {
		return
	}
	cur, prev := &r.states[r.cur], &r.states[1-r.cur]
	r.codec.Set(cur, n, st, tables)
	key := r.overflow.Swap(false) || !r.hasPrev || prev.N >= n || n-r.lastKey >= r.keyEvery
	typ := recTick
	if key {
		players, _ := json.Marshal(r.players)
		typ = recKey
		r.rec = binary.AppendUvarint(r.rec[:0], uint64(len(players)))
		r.rec = append(r.rec, players...)
		r.rec = r.codec.Append(r.rec, nil, cur)
	} else {
		r.rec = r.codec.Append(r.rec[:0], prev, cur)
	}
	if !r.hand(typ, r.rec) {
		r.hasPrev = false
		return
	}
	if key {
		r.lastKey = n
	}
	r.hasPrev = true
	r.cur = 1 - r.cur
}

// event records a joined, left or chat event with its live id.
func (r *Recorder) event(typ byte, v any) {
	var id uint64
	if r.liveID != nil {
		id = r.liveID()
	}
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	r.rec = binary.AppendUvarint(r.rec[:0], id)
	r.rec = append(r.rec, data...)
	r.hand(typ, r.rec)
}

// Joined records a `joined` event. It implements room.Observer.
func (r *Recorder) Joined(m *wire.Joined) {
	r.players = append(r.players, wire.PlayerInfo{ID: m.ID, Name: m.Name})
	r.event(recJoined, m)
}

// Left records a `left` event. It implements room.Observer.
func (r *Recorder) Left(m *wire.Left) {
	r.players = slices.DeleteFunc(r.players, func(p wire.PlayerInfo) bool { return p.ID == m.ID })
	r.event(recLeft, m)
}

// Chat records a `chat` event. It implements room.Observer.
func (r *Recorder) Chat(m *wire.ChatLine) { r.event(recChat, m) }

// Closed records the end of the room and has the writer finish the file.
// It implements room.Observer.
func (r *Recorder) Closed(reason string) {
	data, _ := json.Marshal(wire.SpectatorClosed{Reason: reason})
	p := binary.AppendVarint(nil, time.Now().UnixMilli())
	r.hand(recClosed, append(p, data...))
	r.finish()
}

// Close ends the recording without a `closed` record (as a process that
// stops would leave it): what was handed over is written, then the file
// is closed. It waits for the writer and is safe to call more than once,
// and after Closed.
func (r *Recorder) Close() {
	r.finish()
	<-r.done
}

func (r *Recorder) finish() {
	r.mu.Lock()
	r.ending = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// compressors holds the DEFLATE writers of the recordings' writers. A
// writer is about 1.2 MB of tables and windows and is used once a second
// for a moment: recordings share them rather than each room keeping one.
var compressors = sync.Pool{New: func() any {
	zw, _ := flate.NewWriter(nil, flate.BestSpeed)
	return zw
}}

// writer is the state of a recording's writer goroutine.
type writer struct {
	r       *Recorder
	zbuf    bytes.Buffer
	out     []byte // frames to write
	block   []byte // records of the block being built
	head    blockHead
	nextOrd uint64
	st      int64 // st of the newest tick record
	endedAt int64 // the close time of the `closed` record, once written
	header  bool  // the header frame was written
	err     error // the first write error; nothing is written after it
	synced  bool  // nothing written since the last sync
	lastN   uint64
	ticks   uint64
	ship    *shipper // to JetStream (Config.NATS), from the header's write on
}

// run is the writer goroutine: every FlushEvery, and when the recording
// ends, it takes the records handed over and appends them to the file.
func (r *Recorder) run() {
	defer r.s.wg.Done()
	defer close(r.done)
	w := &writer{r: r, nextOrd: 1, synced: true}
	flush := time.NewTicker(r.s.cfg.FlushEvery)
	defer flush.Stop()
	sync := time.NewTicker(r.s.cfg.SyncEvery)
	defer sync.Stop()
	var batch []byte
	for {
		select {
		case <-flush.C:
		case <-r.kick:
		case <-sync.C:
			w.sync()
			continue
		}
		r.mu.Lock()
		batch, r.pend = r.pend, batch[:0]
		ending := r.ending
		r.mu.Unlock()
		w.write(batch)
		if ending {
			w.sync()
			w.close()
			return
		}
	}
}

// write turns a batch of records into frames and appends them to the file
// in one write: the header record as the header frame, the others in
// blocks, a new block at each keyframe.
func (w *writer) write(batch []byte) {
	if len(batch) == 0 || w.err != nil {
		return
	}
	w.out = w.out[:0]
	closed := false
	for b := batch; len(b) > 0; {
		typ, payload, rest, err := nextRecord(b)
		if err != nil {
			break // cannot happen: the records were built by this package
		}
		b = rest
		switch typ {
		case recHeader:
			if !w.header && w.nextOrd == 1 {
				w.header = true
				w.out = append(w.out, magic...)
				w.out = appendFrame(w.out, append([]byte{kindHeader}, payload...))
			}
			continue
		case recKey:
			w.endBlock()
			w.head.flags |= flagKey
		}
		if w.head.records == 0 {
			w.head.firstOrd = w.nextOrd
		}
		w.nextOrd++
		w.head.records++
		switch typ {
		case recKey, recTick:
			d := payload
			if typ == recKey {
				v := wire.NewVarintReader(payload)
				v.Bytes()
				d = v.Rest()
			}
			n, age, dst, _ := tickHead(d)
			if age == 0 {
				w.st = dst
			} else {
				w.st += dst
			}
			if w.head.ticks == 0 {
				w.head.firstTick = n
			}
			w.head.ticks++
			w.head.lastTick = n
			w.head.endMS = w.st
			w.lastN = n
			w.ticks++
		case recClosed:
			w.endedAt = wire.NewVarintReader(payload).Varint()
			w.head.endMS = w.endedAt
			w.head.flags |= flagClosed
			closed = true
		}
		w.block = appendRecord(w.block, typ, payload)
	}
	w.endBlock()
	if len(w.out) == 0 || !w.header {
		return // a room that never opened has nothing to replay
	}
	if _, err := w.r.f.Write(w.out); err != nil {
		w.err = err
		w.r.s.cfg.Logger.Error("replay: recording stopped: write failed", "room", w.r.e.sum.Room, "err", err)
		return
	}
	w.synced = false
	w.r.ticks.Store(w.ticks)
	w.r.lastN.Store(w.lastN)
	w.r.written.Add(int64(len(w.out)))
	w.published(closed)
}

// endBlock compresses the block being built, if any, into a frame.
func (w *writer) endBlock() {
	if w.head.records == 0 {
		w.head = blockHead{}
		return
	}
	w.zbuf.Reset()
	zw := compressors.Get().(*flate.Writer)
	zw.Reset(&w.zbuf)
	_, _ = zw.Write(w.block)
	_ = zw.Close()
	compressors.Put(zw)
	body := w.block
	if w.zbuf.Len() < len(w.block) {
		w.head.flags |= flagFlate
		body = w.zbuf.Bytes()
	}
	payload := w.head.appendTo(nil)
	payload = append(payload, body...)
	w.out = appendFrame(w.out, payload)
	w.block = w.block[:0]
	w.head = blockHead{}
}

// published updates the store's entry after a write and wakes the
// readers following the recording.
func (w *writer) published(closed bool) {
	s, e := w.r.s, w.r.e
	s.mu.Lock()
	if !e.ready {
		// The header went first: it is on disk now.
		e.ready = true
	}
	e.size += int64(len(w.out))
	e.sum.Ticks = w.ticks
	if closed {
		e.sum.End = w.endedAt
	}
	close(e.flushed)
	e.flushed = make(chan struct{})
	sum := e.sum
	s.mu.Unlock()
	if s.shared != nil {
		if w.ship == nil {
			w.ship = s.shared.newShipper(sum.Room, sum.Start)
		}
		w.ship.add(w.out, sum, false)
	}
}

func (w *writer) sync() {
	if w.synced || w.err != nil {
		return
	}
	if err := w.r.f.Sync(); err != nil {
		w.r.s.cfg.Logger.Warn("replay: sync failed", "room", w.r.e.sum.Room, "err", err)
	}
	w.synced = true
}

// close closes the file and hands the entry over to retention.
func (w *writer) close() {
	if err := w.r.f.Close(); err != nil && w.err == nil {
		w.r.s.cfg.Logger.Warn("replay: closing a recording", "room", w.r.e.sum.Room, "err", err)
	}
	s, e := w.r.s, w.r.e
	s.mu.Lock()
	e.live = false
	if e.sum.End == 0 {
		e.sum.End = max(w.st, e.sum.Start)
	}
	close(e.flushed)
	e.flushed = nil
	if w.ship != nil {
		w.ship.add(nil, e.sum, true)
	}
	delete(s.recorders, w.r)
	if !e.ready {
		delete(s.entries, e.sum.Room) // nothing worth keeping
		_ = os.Remove(e.path)
	}
	s.mu.Unlock()
	s.pokePrune()
}
