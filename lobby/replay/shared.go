package replay

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of what a store keeps in JetStream (see the package doc,
// "Several nodes").
const (
	// SharedStream is the stream of the recordings' frames, one subject
	// per recording: SharedSubjects with the room id and its start.
	SharedStream = "TICKWIRE_REPLAYS"
	// SharedSubjects prefixes the subjects of SharedStream:
	// tickwire.replay.<room>.<start>.
	SharedSubjects = "tickwire.replay."
	// SharedBucket is the key-value bucket of the recordings' listings,
	// one key per room.
	SharedBucket = "tickwire-replays"
)

// Timings of the JetStream copy.
const (
	// summaryEvery is how often a running recording's listing is put to
	// SharedBucket at most (and at its start and end).
	summaryEvery = 5 * time.Second
	// maxShipQueue caps the bytes a recording holds for JetStream while it
	// is unreachable, maxSharedQueue those of all the recordings of a
	// store; beyond them the recording's JetStream copy ends there.
	maxShipQueue   = 16 << 20
	maxSharedQueue = 256 << 20
	// fetchWait is how long a copy waits for a recording's first frames.
	fetchWait = 10 * time.Second
	// ensureEvery is how often the stream and bucket are asked for again
	// while JetStream cannot be reached.
	ensureEvery = 5 * time.Second
)

// Timings of the JetStream copy that tests shorten.
var (
	// staleAfter: a running recording whose listing was not put for this
	// long is taken as ended (its node stopped without saying so).
	staleAfter = 30 * time.Second
	// shipDrain is how long a recording that has ended goes on trying to
	// hand its last frames to JetStream.
	shipDrain = 5 * time.Second
)

// remoteSum is a recording's listing as SharedBucket holds it.
type remoteSum struct {
	Summary
	Updated int64 `json:"updated"` // Unix ms of the put
}

// ended reports whether the recording ended at now (Unix ms): it says so,
// or its node stopped putting its listing.
func (r remoteSum) ended(now int64) bool {
	return r.End != 0 || now-r.Updated > staleAfter.Milliseconds()
}

// listing is the Summary to list: a stale running recording ends at its
// last listing.
func (r remoteSum) listing(now int64) Summary {
	s := r.Summary
	if s.End == 0 && r.ended(now) {
		s.End = max(r.Updated, s.Start)
	}
	return s
}

// sharedSubject is the subject of a recording's frames.
func sharedSubject(room string, start int64) string {
	return SharedSubjects + room + "." + strconv.FormatInt(start, 10)
}

// shared is a store's side of JetStream: it makes the stream and bucket,
// and keeps a view of every node's listings, updated by its watcher
// goroutine.
type shared struct {
	s        *Store
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int
	kv       atomic.Pointer[jetstream.KeyValue] // set once the stream and bucket exist

	mu   sync.Mutex // guards view
	view map[string]remoteSum
	// down: the stream and bucket could not be set up the last time:
	// recordings do not wait for them.
	down atomic.Bool
	// queued is the bytes every shipper holds.
	queued atomic.Int64
	// waitWarned and lossWarned are when a recording last logged that
	// its copy waits, or lost frames (Unix ms).
	waitWarned, lossWarned atomic.Int64
}

// warnEvery spaces the warnings of recordings about JetStream.
const warnEvery = 30 * time.Second

// warn logs msg as a warning at most every warnEvery (last keeps when),
// as a debug line otherwise, so that a trouble with JetStream does not
// log once per recording.
func (sh *shared) warn(last *atomic.Int64, msg string, args ...any) {
	now, prev := time.Now().UnixMilli(), last.Load()
	if now-prev >= warnEvery.Milliseconds() && last.CompareAndSwap(prev, now) {
		sh.s.cfg.Logger.Warn(msg, args...)
		return
	}
	sh.s.cfg.Logger.Debug(msg, args...)
}

func newShared(s *Store, nc *nats.Conn, replicas int) (*shared, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("replay: jetstream: %w", err)
	}
	return &shared{s: s, nc: nc, js: js, replicas: max(replicas, 1), view: map[string]remoteSum{}}, nil
}

// ensure creates or updates the stream and the bucket.
func (sh *shared) ensure(ctx context.Context) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	keep := sh.s.cfg.Keep
	_, err := sh.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        SharedStream,
		Description: "Tickwire recordings: the frames of each, one subject per recording",
		Subjects:    []string{SharedSubjects + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    sh.replicas,
		MaxAge:      keep,
		Discard:     jetstream.DiscardOld,
		Duplicates:  min(2*time.Minute, keep),
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", SharedStream, err)
	}
	kv, err := sh.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SharedBucket,
		Description: "Tickwire recordings: the listing of each, by room",
		History:     1,
		TTL:         keep,
		Storage:     jetstream.FileStorage,
		Replicas:    sh.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", SharedBucket, err)
	}
	return kv, nil
}

// bucket returns the bucket, nil until ensure has succeeded.
func (sh *shared) bucket() jetstream.KeyValue {
	if p := sh.kv.Load(); p != nil {
		return *p
	}
	return nil
}

// run makes the stream and bucket, retrying while JetStream cannot be
// reached, then watches the bucket into the view until ctx ends. The
// watch starts over after each reconnection to NATS (a restarted server
// may have lost the watch's consumer); every listing comes again then.
func (sh *shared) run(ctx context.Context) {
	defer sh.s.wg.Done()
	log := sh.s.cfg.Logger
	reconnected := sh.nc.StatusChanged(nats.CONNECTED)
	defer sh.nc.RemoveStatusListener(reconnected)
	failing := false
	for ctx.Err() == nil {
		// Each time, as a server that lost its files has lost them too.
		kv, err := sh.ensure(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				log.Warn("replay: JetStream unavailable: recordings are kept on this node only until it is back", "err", err)
			}
			sh.down.Store(true)
			failing = true
			sleep(ctx, ensureEvery)
			continue
		}
		if failing {
			log.Info("replay: JetStream available: recordings are shared again")
		}
		failing = false
		sh.kv.Store(&kv)
		sh.down.Store(false)
		w, err := kv.WatchAll(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("replay: watching the shared listings", "err", err)
			}
			sleep(ctx, ensureEvery)
			continue
		}
		began := time.Now()
		sh.watch(ctx, w, reconnected)
		_ = w.Stop()
		if time.Since(began) < time.Second {
			sleep(ctx, time.Second) // no busy loop over a watch that fails
		}
	}
}

// watch applies the bucket's updates to the view until the watcher ends,
// ctx ends or the connection to NATS is made again.
func (sh *shared) watch(ctx context.Context, w jetstream.KeyWatcher, reconnected <-chan nats.Status) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reconnected:
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // the initial values are in
			}
			sh.mu.Lock()
			var rs remoteSum
			if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &rs) != nil || rs.Room != e.Key() || !validRoom(rs.Room) {
				delete(sh.view, e.Key())
			} else {
				sh.view[rs.Room] = rs
			}
			sh.mu.Unlock()
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// lookup returns the listing of a room in the view.
func (sh *shared) lookup(room string) (remoteSum, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rs, ok := sh.view[room]
	return rs, ok
}

// list returns the view's listings, less those expired at now.
func (sh *shared) list(now int64) []remoteSum {
	keep := sh.s.cfg.Keep.Milliseconds()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]remoteSum, 0, len(sh.view))
	for room, rs := range sh.view {
		if end := rs.listing(now).End; end != 0 && now-end > keep {
			delete(sh.view, room) // the bucket has dropped it too
			continue
		}
		out = append(out, rs)
	}
	return out
}

// shipper hands one recording's frames to SharedStream and its listing to
// SharedBucket, on a goroutine of its own, so that the recording's writer
// never waits for NATS. Frames go in the order written, each message one
// or more whole frames (the first one the magic and the header); a
// message is retried until it is stored (JetStream drops a duplicate by
// its id), so the copy has no gap. While JetStream cannot be reached the
// frames wait, up to maxShipQueue bytes; past that the copy ends there.
type shipper struct {
	sh    *shared
	room  string
	start int64
	subj  string
	kick  chan struct{} // wakes the goroutine (capacity 1)

	mu      sync.Mutex // guards the fields below
	queue   [][]byte   // messages to publish, oldest first
	queued  int        // their bytes
	sum     remoteSum  // the newest listing
	sumNew  bool       // sum was not put yet
	sumLast time.Time  // when a listing was put last
	ending  bool       // the recording has ended: drain, then return
	broken  bool       // frames were lost: nothing more is shipped
	seq     uint64     // messages queued so far: their ids
}

// newShipper starts the shipper of the recording of room that started at
// start (Unix ms), once its header is in its file.
func (sh *shared) newShipper(room string, start int64) *shipper {
	p := &shipper{sh: sh, room: room, start: start, subj: sharedSubject(room, start), kick: make(chan struct{}, 1)}
	sh.s.wg.Add(1)
	go p.run()
	return p
}

// maxMsg is the largest message payload the server takes, less room for
// the headers.
func (p *shipper) maxMsg() int {
	n := int(p.sh.nc.MaxPayload())
	if n <= 0 {
		n = 1 << 20
	}
	return n - 512
}

// add queues the frames just written to the file (the magic and header
// first, in the first call) and the recording's listing after them; end
// says it is the last call.
func (p *shipper) add(out []byte, sum Summary, end bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.broken && len(out) > 0 {
		msgs, ok := splitFrames(out, p.maxMsg())
		switch {
		case p.sh.down.Load():
			// No JetStream to wait for: this recording stays here.
			p.breakCopy("replay: JetStream unavailable: a recording is kept on its node only")
		case !ok || p.queued+len(out) > maxShipQueue || p.sh.queued.Load()+int64(len(out)) > maxSharedQueue:
			p.breakCopy("replay: JetStream unreachable for too long: a recording's shared copy ends early")
		default:
			for _, m := range msgs {
				p.queue = append(p.queue, m)
				p.queued += len(m)
			}
			p.sh.queued.Add(int64(len(out)))
		}
	}
	p.sum = remoteSum{Summary: sum}
	p.sumNew = true
	p.ending = p.ending || end
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// breakCopy drops what waits and ships nothing more; p.mu is held.
func (p *shipper) breakCopy(why string) {
	if !p.broken {
		p.sh.warn(&p.sh.lossWarned, why, "room", p.room, "queued", p.queued)
	}
	p.sh.queued.Add(-int64(p.queued))
	p.broken, p.queue, p.queued = true, nil, 0
}

// splitFrames cuts out, whole frames (after the magic when out starts with
// it), into messages of at most limit bytes, each of whole frames, the
// magic in the first. It fails when a frame does not fit in a message.
func splitFrames(out []byte, limit int) ([][]byte, bool) {
	var msgs [][]byte
	start, off, lead := 0, 0, 0 // lead: the magic before the message's first frame
	if len(out) >= len(magic) && string(out[:len(magic)]) == magic {
		off, lead = len(magic), len(magic)
	}
	for off < len(out) {
		if len(out)-off < frameHead {
			return nil, false
		}
		size := frameHead + int(binary.LittleEndian.Uint32(out[off:off+4]))
		if size > len(out)-off {
			return nil, false
		}
		if off+size-start > limit && off > start+lead {
			msgs = append(msgs, append([]byte(nil), out[start:off]...))
			start, lead = off, 0
		}
		if off+size-start > limit {
			return nil, false
		}
		off += size
	}
	if off > start {
		msgs = append(msgs, append([]byte(nil), out[start:off]...))
	}
	return msgs, true
}

// run is the shipper's goroutine: it publishes what is queued, retrying
// with a growing pause while JetStream cannot be reached, and returns
// once the recording has ended and everything is shipped, or shipDrain
// after the end.
func (p *shipper) run() {
	defer p.sh.s.wg.Done()
	log := p.sh.s.cfg.Logger
	var endedAt time.Time
	pause := 250 * time.Millisecond
	failing := false
	for {
		err := p.ship()
		p.mu.Lock()
		done := p.ending && (err == nil || p.broken)
		if p.ending && endedAt.IsZero() {
			endedAt = time.Now()
		}
		// A stream never set up is not waited for: JetStream has been
		// unreachable since the store opened.
		if err != nil && !p.broken && p.ending && (time.Since(endedAt) > shipDrain || p.sh.bucket() == nil) {
			p.breakCopy("replay: JetStream unreachable as a recording ended: its shared copy lacks the end")
			done = true
		}
		p.mu.Unlock()
		if done {
			return
		}
		if err != nil {
			if !failing {
				p.sh.warn(&p.sh.waitWarned, "replay: JetStream unreachable: the recordings' shared copies wait", "room", p.room, "err", err)
			}
			failing = true
			t := time.NewTimer(pause)
			<-t.C
			pause = min(2*pause, 2*time.Second)
			continue
		}
		if failing {
			log.Debug("replay: the recording's shared copy caught up", "room", p.room)
		}
		failing, pause = false, 250*time.Millisecond
		<-p.kick
	}
}

// ship publishes the queued messages, then the listing when it is due;
// it returns the first error, the rest waiting for the next try.
func (p *shipper) ship() error {
	kv := p.sh.bucket()
	if kv == nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.queue) == 0 && !p.sumNew {
			return nil
		}
		return errors.New("the stream is not set up yet")
	}
	for {
		p.mu.Lock()
		if len(p.queue) == 0 || p.broken {
			p.mu.Unlock()
			break
		}
		m, id := p.queue[0], p.seq+1
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.sh.js.Publish(ctx, p.subj, m, jetstream.WithMsgID(p.subj+"."+strconv.FormatUint(id, 10)))
		cancel()
		if err != nil {
			return err
		}
		p.mu.Lock()
		if len(p.queue) > 0 && !p.broken { // not dropped meanwhile
			p.queue[0] = nil
			p.queue = p.queue[1:]
			p.queued -= len(m)
			p.sh.queued.Add(-int64(len(m)))
			p.seq = id
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	due := p.sumNew && (p.ending || p.sumLast.IsZero() || time.Since(p.sumLast) >= summaryEvery)
	sum := p.sum
	p.mu.Unlock()
	if !due {
		return nil
	}
	sum.Updated = time.Now().UnixMilli()
	b, _ := json.Marshal(sum)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := kv.Put(ctx, p.room, b)
	cancel()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.sumLast = time.Now()
	if p.sum == (remoteSum{Summary: sum.Summary}) {
		p.sumNew = false
	}
	p.mu.Unlock()
	return nil
}

// fetch copies a recording of another node from SharedStream into the
// file of e, a copy entry, and follows it while it is being recorded: the
// copy is an entry of the store like the recordings made here (Open,
// follow and Prune treat it as one), live until the recording's end is
// in. A copy that cannot be completed is dropped from the store (readers
// that have it open play what it holds).
func (sh *shared) fetch(ctx context.Context, e *entry, rs remoteSum) {
	s := sh.s
	defer s.wg.Done()
	complete := false
	var f *os.File
	var x *fileIndex
	var size int64
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		s.copyDone(e, x, rs, complete)
	}()
	f, err := os.OpenFile(e.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		s.cfg.Logger.Warn("replay: copying a recording", "room", rs.Room, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, fetchWait)
	cons, err := sh.js.OrderedConsumer(cctx, SharedStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{sharedSubject(rs.Room, rs.Start)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	cancel()
	if err != nil {
		s.cfg.Logger.Warn("replay: copying a recording", "room", rs.Room, "err", err)
		return
	}
	fetchBytes := max(8<<20, 2*int(sh.nc.MaxPayload()))
	began, lastMsg := time.Now(), time.Now()
	for ctx.Err() == nil {
		// The listing says the recording ended before the fetch: what the
		// fetch does not find is not coming.
		cur, ok := sh.lookup(rs.Room)
		now := time.Now().UnixMilli()
		endedBefore := !ok || cur.Start != rs.Start || cur.ended(now)
		if ok && cur.Start == rs.Start {
			rs = cur // the newest listing, for the end of the copy
		}
		fctx, fcancel := context.WithTimeout(ctx, time.Second)
		batch, err := cons.FetchBytes(fetchBytes, jetstream.FetchContext(fctx))
		if err != nil {
			fcancel()
			if time.Since(lastMsg) > staleAfter {
				return
			}
			sleep(ctx, 250*time.Millisecond)
			continue
		}
		// Each message is handed to the readers as it comes.
		got, pending, stop := 0, uint64(1), false
		for m := range batch.Messages() {
			if _, err := f.Write(m.Data()); err != nil {
				s.cfg.Logger.Warn("replay: copying a recording", "room", rs.Room, "err", err)
				stop = true
				break
			}
			size += int64(len(m.Data()))
			got++
			lastMsg = time.Now()
			if md, err := m.Metadata(); err == nil {
				pending = md.NumPending
			}
			if x == nil {
				if x, err = index(f, size); err != nil {
					x, stop = nil, true // the first message is the magic and the header
					break
				}
			} else {
				x.damaged = false
				x.extend(f, size)
			}
			if x.damaged && x.end < size {
				stop = true // not frames that follow on: the copy stops here
				break
			}
			s.copied(e, x)
			if x.closed || endedBefore && pending == 0 {
				complete, stop = true, true
				break
			}
		}
		fcancel()
		for range batch.Messages() {
			// What the fetch still holds: its end comes with its context's.
		}
		switch {
		case stop:
			return
		case x == nil && time.Since(began) > fetchWait:
			return
		case x != nil && endedBefore && got == 0:
			complete = true
			return
		}
	}
}

// copied publishes a copy's progress to its readers.
func (s *Store) copied(e *entry, x *fileIndex) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.ready {
		e.ready = true
		close(e.got)
	}
	e.size = x.end
	e.sum = x.summary()
	e.sum.End = 0
	close(e.flushed)
	e.flushed = make(chan struct{})
}

// copyDone ends a copy: complete, it stays in the store as a finished
// recording; otherwise it is dropped.
func (s *Store) copyDone(e *entry, x *fileIndex, rs remoteSum, complete bool) {
	s.mu.Lock()
	e.live = false
	if !e.ready {
		close(e.got)
	}
	if x != nil {
		e.sum = x.summary()
		if !x.closed {
			e.sum.End = max(rs.listing(time.Now().UnixMilli()).End, x.endMS, e.sum.Start)
		}
	}
	close(e.flushed)
	e.flushed = nil
	drop := !complete || !e.ready
	if drop && s.entries[e.sum.Room] == e {
		delete(s.entries, e.sum.Room)
	}
	s.mu.Unlock()
	if drop {
		_ = os.Remove(e.path)
	}
	s.pokePrune()
}
