package replay

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/wire"
)

// DefaultCacheBytes is the default of Config.CacheBytes.
const DefaultCacheBytes = 64 << 20

// CacheStats counts the work of a store's cache of decoded blocks.
type CacheStats struct {
	Decoded uint64 // blocks decoded by readers (a miss, or no cache)
	Hits    uint64 // blocks a reader took from the cache, decoded by another
	Blocks  int    // blocks held now
	Bytes   int64  // their size, as counted against Config.CacheBytes
}

// blockKey names a block of one recording: the file, the recording's
// start (unique within a store, so a new recording of the same room in
// the same file is another one) and the block frame's offset.
type blockKey struct {
	path  string
	start int64
	off   int64
}

// cachedEvent is one event of a decoded block.
type cachedEvent struct {
	Event
	// players are the room's players after the event (shared, never
	// modified: a change makes a new slice).
	players []wire.PlayerInfo
}

// decodedBlock is what a block's records give a reader that reaches it
// in order, which does not depend on the reader: the events of every
// record, their SSE bytes encoded, and the decoder's state after them.
// Once ready it is never modified, so that readers share it.
type decodedBlock struct {
	key   blockKey
	head  blockHead
	size  int64 // of the frame
	ready chan struct{}
	ok    bool // the block read back as scanned
	elem  *list.Element
	bytes int64

	events []cachedEvent
	// How the block ends: endOrd is the ordinal of the last record read;
	// closed: the `closed` record followed it; broken: a record that
	// cannot be read followed it, and nothing after it is read.
	endOrd  uint64
	closed  bool
	broken  bool
	state   wire.DeltaState // the newest tick after the block, when hasTick
	hasTick bool
	players []wire.PlayerInfo // after the block
}

// blockCache holds the decoded blocks of a store's recordings, least
// recently used first out, so that the viewers of the same part of a
// recording decode it once. A block is decoded by the first reader that
// asks for it; the others that ask meanwhile wait for it. Every block of a
// file's index is a whole frame, written once and never changed, so a
// running room's blocks are cached as they come; its newest, not yet
// written data is in no block. It is safe for concurrent use.
type blockCache struct {
	max int64

	mu     sync.Mutex // guards the fields below
	blocks map[blockKey]*decodedBlock
	lru    list.List // of *decodedBlock, ready ones, most recently used first
	bytes  int64

	decoded atomic.Uint64
	hits    atomic.Uint64
}

func newBlockCache(max int64) *blockCache {
	return &blockCache{max: max, blocks: map[blockKey]*decodedBlock{}}
}

// get returns the block of key, decoded by fill when no one has it. A
// block held under key whose head or size differs is not used.
func (c *blockCache) get(key blockKey, ref *blockRef, fill func(*decodedBlock)) *decodedBlock {
	if c == nil {
		return c.fill(key, ref, fill)
	}
	c.mu.Lock()
	b := c.blocks[key]
	if b != nil && (b.head != ref.blockHead || b.size != ref.size) {
		c.mu.Unlock()
		return c.fill(key, ref, fill)
	}
	if b != nil {
		if b.elem != nil {
			c.lru.MoveToFront(b.elem)
		}
		c.mu.Unlock()
		<-b.ready
		c.hits.Add(1)
		return b
	}
	b = &decodedBlock{key: key, head: ref.blockHead, size: ref.size, ready: make(chan struct{})}
	c.blocks[key] = b
	c.mu.Unlock()

	fill(b)
	c.decoded.Add(1)
	close(b.ready)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !b.ok {
		delete(c.blocks, key) // the next reader tries the file again
		return b
	}
	b.bytes = b.cost()
	b.elem = c.lru.PushFront(b)
	c.bytes += b.bytes
	for c.bytes > c.max && c.lru.Len() > 0 {
		old := c.lru.Remove(c.lru.Back()).(*decodedBlock)
		delete(c.blocks, old.key)
		c.bytes -= old.bytes
	}
	return b
}

// fill decodes a block that is not to be cached.
func (c *blockCache) fill(key blockKey, ref *blockRef, fill func(*decodedBlock)) *decodedBlock {
	b := &decodedBlock{key: key, head: ref.blockHead, size: ref.size, ready: make(chan struct{})}
	fill(b)
	close(b.ready)
	if c != nil {
		c.decoded.Add(1)
	}
	return b
}

// stats returns the cache's counters.
func (c *blockCache) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Decoded: c.decoded.Load(), Hits: c.hits.Load(), Blocks: c.lru.Len(), Bytes: c.bytes}
}

// cost is about the memory a decoded block holds.
func (b *decodedBlock) cost() int64 {
	n := int64(256)
	for i := range b.events {
		e := &b.events[i]
		n += 160 + int64(cap(e.sse))
		if e.sse == nil {
			n += int64(cap(e.Data))
		}
		for _, t := range e.Tables {
			n += 32 + 8*int64(cap(t.Data))
		}
	}
	for _, t := range b.state.T {
		n += 32 + 8*int64(cap(t.Q))
	}
	return n
}

// encodeSSE gives e its SSE bytes, with its Data within them.
func encodeSSE(e *Event) {
	b := httpapi.AppendSSE(make([]byte, 0, len(e.Data)+len(e.Type)+40), e.ID, e.Type, e.Data)
	end := len(b) - 2
	e.Data = b[end-len(e.Data) : end : end]
	e.sse = b
}
