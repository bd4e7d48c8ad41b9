package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Config sets up a Store. Zero fields take the defaults.
type Config struct {
	// Dir holds the recordings, one file per room (required; created when
	// missing). It belongs to one server process.
	Dir string
	// Keep is how long a recording is kept after its room ended (24h).
	Keep time.Duration
	// MaxBytes caps the recordings' total size: beyond it the oldest
	// finished recordings are removed first. Zero or less: no cap.
	MaxBytes int64
	// FlushEvery is how often a recording's new data is written to its
	// file at most later (1s); SyncEvery how often a file that was
	// written is also synced to the disk (10s).
	FlushEvery time.Duration
	SyncEvery  time.Duration
	// KeyframeEvery is the time between a recording's keyframes (2s), the
	// points a replay can start from.
	KeyframeEvery time.Duration
	// MaxPending caps the bytes a recording holds in memory waiting for
	// its writer (4 MiB); beyond it new data is dropped, and the next tick
	// recorded is a keyframe.
	MaxPending int
	// PruneEvery is how often retention runs (1 min).
	PruneEvery time.Duration
	// CacheBytes caps the store's cache of decoded blocks, shared by the
	// readers of its recordings (DefaultCacheBytes); less than zero: no
	// cache, each reader decodes what it plays.
	CacheBytes int64
	Logger     *slog.Logger
	// NATS, when set, also keeps every recording in NATS JetStream through
	// that connection, where every store on the same NATS lists and plays
	// it, even after this one is gone (see the package doc, "Several
	// nodes"). The store does not close it; close the store first.
	NATS *nats.Conn
	// Replicas is how many JetStream servers keep each recording (1): 3
	// on a NATS cluster survives the loss of one of its servers.
	Replicas int
}

func (c Config) withDefaults() Config {
	if c.Keep <= 0 {
		c.Keep = 24 * time.Hour
	}
	if c.FlushEvery <= 0 {
		c.FlushEvery = time.Second
	}
	if c.SyncEvery <= 0 {
		c.SyncEvery = 10 * time.Second
	}
	if c.KeyframeEvery <= 0 {
		c.KeyframeEvery = 2 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 4 << 20
	}
	if c.PruneEvery <= 0 {
		c.PruneEvery = time.Minute
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// Errors of a Store.
var (
	// ErrNotFound: no recording of that room (never made, expired, or
	// not begun yet).
	ErrNotFound = errors.New("replay: no recording of that room")
	// ErrExists: the room already has a recording in the store.
	ErrExists = errors.New("replay: the room already has a recording")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("replay: store closed")
)

// ext ends the name of every recording file: <room>.twr.
const ext = ".twr"

// copies is the directory, under Config.Dir, of the copies of other
// nodes' recordings fetched from JetStream. It is emptied when a store
// opens.
const copies = "remote"

// Summary describes a recording, as GET /api/replays lists it.
type Summary struct {
	Room  string `json:"room"`
	Mode  string `json:"mode"`
	Start int64  `json:"start"`         // Unix ms, unique within a store
	End   int64  `json:"end,omitempty"` // Unix ms; 0 while the room runs
	Ticks uint64 `json:"ticks"`         // ticks recorded
	Hz    int    `json:"hz"`
}

// entry is the store's view of one recording file.
type entry struct {
	path    string
	sum     Summary
	ready   bool          // the header is on disk
	live    bool          // a Recorder of this store writes it
	size    int64         // bytes on disk
	flushed chan struct{} // closed and replaced after each write of a live recording
	// A copy of another node's recording (Config.NATS): live while it is
	// being fetched; got is closed once its header is on disk (ready) or
	// the fetch has failed.
	copy bool
	got  chan struct{}
}

// Store keeps the recordings of a directory: it makes Recorders, lists
// and opens recordings, and removes old ones (Config.Keep, Config.MaxBytes)
// every PruneEvery and whenever a recording ends, never one being
// recorded. All its methods are safe for concurrent use.
type Store struct {
	cfg    Config
	ctx    context.Context // ends at Close: the pruner, the copies' fetches
	cancel context.CancelFunc
	shared *shared        // nil without Config.NATS
	cache  *blockCache    // nil when Config.CacheBytes < 0
	wg     sync.WaitGroup // the pruner and every recorder's writer
	prune  chan struct{}  // asks the pruner to run now (capacity 1)
	// pruning is held by a Prune from its choice of recordings to the
	// removal of their files, so that when Prune returns, the files of
	// the recordings it found expired are gone, whoever removed them.
	pruning sync.Mutex

	mu        sync.Mutex // guards the fields below
	entries   map[string]*entry
	lastStart int64 // the newest Summary.Start handed out
	closed    bool
	recorders map[*Recorder]struct{}
}

// Open opens the store of cfg.Dir, creating the directory when missing.
// Every recording in it is checked: a torn or damaged tail is cut off
// (the file is truncated after its last good frame) and a file without a
// good header is removed. Then old recordings are pruned, and a goroutine
// goes on pruning until Close.
func Open(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("replay: Config.Dir is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	s := &Store{cfg: cfg, prune: make(chan struct{}, 1), entries: map[string]*entry{}, recorders: map[*Recorder]struct{}{}}
	if cfg.CacheBytes > 0 {
		s.cache = newBlockCache(cfg.CacheBytes)
	}
	names, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	for _, de := range names {
		room, ok := strings.CutSuffix(de.Name(), ext)
		if !ok || de.IsDir() || !validRoom(room) {
			continue
		}
		path := filepath.Join(cfg.Dir, de.Name())
		e, err := recoverFile(path)
		if err != nil {
			cfg.Logger.Warn("replay: unreadable recording removed", "file", path, "err", err)
			_ = os.Remove(path)
			continue
		}
		s.entries[room] = e
		s.lastStart = max(s.lastStart, e.sum.Start)
	}
	cdir := filepath.Join(cfg.Dir, copies)
	if err := os.RemoveAll(cdir); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if cfg.NATS != nil {
		if err := os.Mkdir(cdir, 0o755); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if s.shared, err = newShared(s, cfg.NATS, cfg.Replicas); err != nil {
			return nil, err
		}
	}
	s.Prune()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.pruner(s.ctx)
	if s.shared != nil {
		s.wg.Add(1)
		go s.shared.run(s.ctx)
	}
	return s, nil
}

// validRoom reports whether id is a room id (1-64 of [A-Za-z0-9_-]), so a
// file name made of it stays in the directory.
func validRoom(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// recoverFile reads the recording at path, cuts off a damaged tail and
// returns its entry.
func recoverFile(path string) (*entry, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	idx, err := index(f, fi.Size())
	if err != nil {
		return nil, err
	}
	if idx.end < fi.Size() {
		if err := f.Truncate(idx.end); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	return &entry{path: path, sum: idx.summary(), ready: true, size: idx.end}, nil
}

// Record starts recording the room id: it creates the room's file and
// the goroutine that writes it, which ends after the Recorder's Closed
// (or Close). It fails with ErrExists when the store holds a recording of
// that id.
func (s *Store) Record(id string, opts RecordOptions) (*Recorder, error) {
	if !validRoom(id) {
		return nil, fmt.Errorf("replay: bad room id %q", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.entries[id] != nil {
		return nil, ErrExists
	}
	path := filepath.Join(s.cfg.Dir, id+ext)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrExists
		}
		return nil, fmt.Errorf("replay: %w", err)
	}
	e := &entry{path: path, sum: Summary{Room: id}, live: true, flushed: make(chan struct{})}
	s.entries[id] = e
	r := newRecorder(s, e, f, opts)
	s.recorders[r] = struct{}{}
	s.wg.Add(1)
	go r.run()
	return r, nil
}

// nextStart returns a recording's start for now: its Unix ms, made later
// by a millisecond or more when another recording of the store started in
// the same one, so that starts order recordings without ties.
func (s *Store) nextStart(now time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastStart = max(now.UnixMilli(), s.lastStart+1)
	return s.lastStart
}

// Has reports whether the store holds a recording of the room (running
// or not), or, with Config.NATS, lists one of another node.
func (s *Store) Has(room string) bool {
	s.mu.Lock()
	has := s.entries[room] != nil
	s.mu.Unlock()
	if !has && s.shared != nil {
		_, has = s.shared.lookup(room)
	}
	return has
}

// List returns up to limit recordings (all when limit <= 0) that started
// before the Unix ms before (any when before <= 0), newest first.
// Recordings not begun yet (no tick and no header on disk) are left out.
// With Config.NATS, the recordings every node keeps in JetStream are
// listed too, a room's own file (recorded here, or a copy) first.
func (s *Store) List(limit int, before int64) []Summary {
	var remote []remoteSum
	if s.shared != nil {
		remote = s.shared.list(time.Now().UnixMilli())
	}
	now := time.Now().UnixMilli()
	s.mu.Lock()
	out := make([]Summary, 0, len(s.entries)+len(remote))
	for _, e := range s.entries {
		if e.ready && (before <= 0 || e.sum.Start < before) {
			out = append(out, e.sum)
		}
	}
	for _, rs := range remote {
		if e := s.entries[rs.Room]; (e == nil || !e.ready) && (before <= 0 || rs.Start < before) {
			out = append(out, rs.listing(now))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Summary) int { return cmp.Compare(b.Start, a.Start) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Size returns the total bytes of the recordings on disk.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, e := range s.entries {
		n += e.size
	}
	return n
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.cfg.Dir }

// Prune removes, now, the finished recordings that ended more than Keep
// ago, then the oldest finished ones while the total size is over
// MaxBytes. A recording being written is never removed.
func (s *Store) Prune() {
	s.pruning.Lock()
	defer s.pruning.Unlock()
	now := time.Now().UnixMilli()
	keep := s.cfg.Keep.Milliseconds()
	s.mu.Lock()
	var total int64
	var finished []*entry
	for _, e := range s.entries {
		total += e.size
		if !e.live {
			finished = append(finished, e)
		}
	}
	slices.SortFunc(finished, func(a, b *entry) int { return cmp.Compare(a.sum.Start, b.sum.Start) })
	var gone []*entry
	for _, e := range finished {
		end := e.sum.End
		if end == 0 {
			end = e.sum.Start
		}
		if now-end > keep || s.cfg.MaxBytes > 0 && total > s.cfg.MaxBytes {
			gone = append(gone, e)
			total -= e.size
			delete(s.entries, e.sum.Room)
		}
	}
	s.mu.Unlock()
	for _, e := range gone {
		if err := os.Remove(e.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.cfg.Logger.Warn("replay: removing an old recording", "file", e.path, "err", err)
		}
	}
}

// pokePrune asks the pruner to run soon.
func (s *Store) pokePrune() {
	select {
	case s.prune <- struct{}{}:
	default:
	}
}

func (s *Store) pruner(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.prune:
		}
		s.Prune()
	}
}

// Close stops the pruner, ends every recording still open as if its
// process stopped (what was handed over is written, without a `closed`
// record), and waits for their writers. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	recs := make([]*Recorder, 0, len(s.recorders))
	for r := range s.recorders {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	for _, r := range recs {
		r.Close()
	}
	s.wg.Wait()
	return nil
}

// Open opens the recording of a room for playing, ErrNotFound when there
// is none. A running room's recording can be played too: the Reader
// follows it as it is written. With Config.NATS, a recording of another
// node is copied from JetStream into the store (and followed while it is
// recorded); Open waits for the start of the copy.
func (s *Store) Open(room string) (*Reader, error) {
	return s.OpenContext(context.Background(), room)
}

// OpenContext is Open, with ctx bounding the wait for the start of a copy
// from JetStream.
func (s *Store) OpenContext(ctx context.Context, room string) (*Reader, error) {
	s.mu.Lock()
	e := s.entries[room]
	if e == nil && s.shared != nil && !s.closed {
		if rs, ok := s.shared.lookup(room); ok {
			e = s.startCopy(rs)
		}
	}
	if e == nil {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	got := e.got
	s.mu.Unlock()
	if got != nil {
		select {
		case <-got:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	if !e.ready {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	path := e.path
	s.mu.Unlock()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	r, err := newReader(f, s, room)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// startCopy registers a copy of the recording of another node that rs
// lists and starts fetching it; s.mu is held.
func (s *Store) startCopy(rs remoteSum) *entry {
	e := &entry{
		path: filepath.Join(s.cfg.Dir, copies, rs.Room+ext), sum: rs.Summary, live: true,
		flushed: make(chan struct{}), copy: true, got: make(chan struct{}),
	}
	e.sum.End = 0
	s.entries[rs.Room] = e
	s.wg.Add(1)
	go s.shared.fetch(s.ctx, e, rs)
	return e
}

// follow returns whether the room's recording is still being written and
// the channel closed at its next write.
func (s *Store) follow(room string) (live bool, next <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[room]
	if e == nil || !e.live {
		return false, nil
	}
	return true, e.flushed
}

// CacheStats returns the counters of the store's cache of decoded blocks
// (all zero without one).
func (s *Store) CacheStats() CacheStats {
	if s.cache == nil {
		return CacheStats{}
	}
	return s.cache.stats()
}

// Summary returns the listing of one recording, from JetStream's when
// the store has no file of it.

func (s *Store) Summary(room string) (Summary, bool) {
	s.mu.Lock()
	e := s.entries[room]
	if e != nil && e.ready {
		defer s.mu.Unlock()
		return e.sum, true
	}
	s.mu.Unlock()
	if s.shared != nil {
		if rs, ok := s.shared.lookup(room); ok {
			return rs.listing(time.Now().UnixMilli()), true
		}
	}
	return Summary{}, false
}
