package feed

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"weak"
)

// Budget bounds the memory of the histories of several feeds (by default
// every feed of the process): when their events add up to more than its
// bytes, the oldest events of all those feeds are evicted first, whichever
// room they belong to, so quiet and ended rooms give way to live ones.
// A Budget is safe for concurrent use.
type Budget struct {
	limit int64
	over  atomic.Bool // used > limit

	mu   sync.Mutex // guards the fields below; taken after a Feed's mu
	used int64
	seq  uint64   // order in which events entered a history
	accs accounts // the feeds with history, the one with the oldest event first
}

// defaultBudget is shared by the feeds created without a Budget.
var defaultBudget = NewBudget(0)

// NewBudget returns a budget of the given bytes (DefaultBudgetBytes when
// bytes <= 0), to share between feeds through Config.Budget.
func NewBudget(bytes int64) *Budget {
	if bytes <= 0 {
		bytes = DefaultBudgetBytes
	}
	return &Budget{limit: bytes}
}

// Limit returns the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Used returns the bytes of history its feeds hold now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// account is one feed's share of a Budget. It holds the feed weakly, so
// that a feed nobody references is collected and gives its bytes back.
type account struct {
	b      *Budget
	feed   weak.Pointer[Feed]
	bytes  int64  // the feed's history bytes
	oldest uint64 // seq of the feed's oldest history event
	index  int    // in b.accs; -1 when the feed has no history
	gone   bool   // forgotten: the feed was collected
}

// addLocked counts an event that entered the history of a's feed, whose
// oldest event now has seq oldest. b.mu is held.
func (b *Budget) addLocked(a *account, size int64, oldest uint64) {
	b.used += size
	a.bytes += size
	a.oldest = oldest
	if a.index < 0 {
		heap.Push(&b.accs, a)
	} else {
		heap.Fix(&b.accs, a.index)
	}
	b.over.Store(b.used > b.limit)
}

// removeLocked uncounts an event that left the history of a's feed, whose
// oldest event now has seq oldest, or that has no history left (empty).
// b.mu is held.
func (b *Budget) removeLocked(a *account, size int64, oldest uint64, empty bool) {
	b.used -= size
	a.bytes -= size
	a.oldest = oldest
	switch {
	case a.index < 0:
	case empty:
		heap.Remove(&b.accs, a.index)
	default:
		heap.Fix(&b.accs, a.index)
	}
	b.over.Store(b.used > b.limit)
}

// forget gives back the bytes of a collected feed.
func (b *Budget) forget(a *account) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.gone {
		return
	}
	a.gone = true
	b.removeLocked(a, a.bytes, 0, true)
}

// settle evicts the oldest events of the budget's feeds until it holds no
// more than its bytes. It must be called without any feed's lock held.
func (b *Budget) settle() {
	for b.over.Load() {
		b.mu.Lock()
		if b.used <= b.limit || len(b.accs) == 0 {
			b.mu.Unlock()
			return
		}
		a := b.accs[0]
		f := a.feed.Value()
		if f == nil { // collected, its cleanup yet to run
			a.gone = true
			b.removeLocked(a, a.bytes, 0, true)
			b.mu.Unlock()
			continue
		}
		b.mu.Unlock()
		f.mu.Lock()
		b.mu.Lock()
		for b.used > b.limit && len(b.accs) > 0 && b.accs[0] == a && len(f.history) > 0 {
			f.evictLocked()
		}
		b.mu.Unlock()
		f.mu.Unlock()
	}
}

// accounts is a heap of accounts, the oldest first event on top.
type accounts []*account

func (h accounts) Len() int           { return len(h) }
func (h accounts) Less(i, j int) bool { return h[i].oldest < h[j].oldest }
func (h accounts) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *accounts) Push(x any) {
	a := x.(*account)
	a.index = len(*h)
	*h = append(*h, a)
}
func (h *accounts) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	a.index = -1
	*h = old[:len(old)-1]
	return a
}

// keepLocked appends a reliable event to the history and evicts the
// oldest events beyond the feed's caps. f.mu is held; the caller settles
// the budget once it has released it.
func (f *Feed) keepLocked(e *Event) {
	b := f.acct.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.seq = b.seq
	f.history = append(f.history, e)
	size := e.size()
	f.histSize += size
	b.addLocked(f.acct, size, f.history[0].seq)
	for len(f.history) > f.cfg.History || f.histSize > f.cfg.HistoryBytes {
		f.evictLocked()
	}
}

// evictLocked drops the oldest event of the history. f.mu and the
// budget's mu are held.
func (f *Feed) evictLocked() {
	e := f.history[0]
	f.history[0] = nil // the backing array outlives the event
	f.history = f.history[1:]
	f.evicted = e.ID
	size := e.size()
	f.histSize -= size
	var oldest uint64
	if len(f.history) > 0 {
		oldest = f.history[0].seq
	}
	f.acct.b.removeLocked(f.acct, size, oldest, len(f.history) == 0)
}

// replaceHistoryLocked makes events the history (a mirror's sync), within
// the feed's caps. f.mu is held; the caller settles the budget once it has
// released it.
func (f *Feed) replaceHistoryLocked(events []*Event) {
	b := f.acct.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(f.acct, f.histSize, 0, true)
	clear(f.history)
	f.history, f.histSize = f.history[:0], 0
	for _, e := range events {
		b.seq++
		e.seq = b.seq
		f.history = append(f.history, e)
		f.histSize += e.size()
	}
	if len(f.history) > 0 {
		b.addLocked(f.acct, f.histSize, f.history[0].seq)
	}
	for len(f.history) > f.cfg.History || f.histSize > f.cfg.HistoryBytes {
		f.evictLocked()
	}
}
