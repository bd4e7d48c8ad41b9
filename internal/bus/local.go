package bus

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
)

// MaxPending is how many messages a Local subscription may have waiting
// for its handler; past it, new messages to that subscription are dropped
// (counted by Local.Dropped), as a NATS server drops for a slow consumer.
const MaxPending = 1 << 16

// Local is the in-process bus: the subscriptions of one process. The zero
// value is not usable; call NewLocal.
type Local struct {
	wg      sync.WaitGroup // subscription goroutines
	dropped atomic.Int64

	mu     sync.Mutex // guards subs and closed
	subs   map[*localSub]struct{}
	closed bool
}

// NewLocal returns an empty in-process bus.
func NewLocal() *Local {
	return &Local{subs: make(map[*localSub]struct{})}
}

// Dropped returns the number of messages dropped because a subscription
// had MaxPending messages waiting.
func (b *Local) Dropped() int64 { return b.dropped.Load() }

// Publish implements Bus.
func (b *Local) Publish(subject string, data []byte) error {
	if err := checkSubject(subject, false); err != nil {
		return err
	}
	_, err := b.deliver(&Msg{Subject: subject, Data: bytes.Clone(data)})
	return err
}

// deliver queues m on every matching subscription and returns how many
// there were.
func (b *Local) deliver(m *Msg) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, ErrClosed
	}
	n := 0
	for s := range b.subs {
		if matches(s.pattern, m.Subject) {
			n++
			if !s.push(m) {
				b.dropped.Add(1)
			}
		}
	}
	return n, nil
}

// Subscribe implements Bus.
func (b *Local) Subscribe(subject string, h Handler) (Subscription, error) {
	if err := checkSubject(subject, true); err != nil {
		return nil, err
	}
	s := &localSub{b: b, pattern: splitSubject(subject), h: h, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	go s.run()
	return s, nil
}

// Request implements Bus.
func (b *Local) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if err := checkSubject(subject, false); err != nil {
		return nil, err
	}
	answer := make(chan []byte, 1)
	m := &Msg{Subject: subject, Data: bytes.Clone(data), respond: func(data []byte) error {
		select {
		case answer <- bytes.Clone(data):
		default: // answered already: the first answer wins
		}
		return nil
	}}
	n, err := b.deliver(m)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrNoResponders
	}
	select {
	case a := <-answer:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close implements Bus: it ends every subscription and waits for handlers
// under way (so it must not be called from a handler).
func (b *Local) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for s := range b.subs {
			s.end()
		}
		clear(b.subs)
	}
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}

func (b *Local) remove(s *localSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
}

// localSub is a subscription of a Local bus; its goroutine (run) hands
// the queued messages to the handler.
type localSub struct {
	b       *Local
	pattern []string
	h       Handler
	wake    chan struct{} // a message was queued (capacity 1)
	stop    chan struct{} // closed by end
	once    sync.Once

	mu    sync.Mutex // guards queue
	queue []*Msg
}

// push queues m unless MaxPending are waiting.
func (s *localSub) push(m *Msg) bool {
	s.mu.Lock()
	if len(s.queue) >= MaxPending {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *localSub) end() { s.once.Do(func() { close(s.stop) }) }

func (s *localSub) run() {
	defer s.b.wg.Done()
	for {
		s.mu.Lock()
		var m *Msg
		if len(s.queue) > 0 {
			m = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if m == nil {
			select {
			case <-s.stop:
				return
			case <-s.wake:
			}
			continue
		}
		select {
		case <-s.stop:
			return
		default:
		}
		s.h(m)
	}
}

// Unsubscribe implements Subscription.
func (s *localSub) Unsubscribe() error {
	s.b.remove(s)
	s.end()
	return nil
}
