package feed

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// countingFeed returns an opened feed whose viewer count is followed:
// negative is set if it ever drops below zero, zero is told each time it
// comes back to zero.
func countingFeed(cfg Config) (f *Feed, count *atomic.Int64, negative *atomic.Bool, zero chan struct{}) {
	count, negative, zero = new(atomic.Int64), new(atomic.Bool), make(chan struct{}, 1)
	f = New(cfg, func(delta int) {
		n := count.Add(int64(delta))
		if n < 0 {
			negative.Store(true)
		}
		if n == 0 {
			select {
			case zero <- struct{}{}:
			default:
			}
		}
	})
	f.Opened(roomInfo(wire.PlayerInfo{ID: 1, Name: "ana"}))
	f.Snap(1, 1, players())
	return f, count, negative, zero
}

// TestSlowViewersHeartbeatsAndCatchUps runs taken-over SSE viewers, half of
// them slow (small socket buffers), with a heartbeat every millisecond. In
// rounds, a chat line larger than a small socket holds reaches the viewers
// while the slow ones do not read, so that the pump hands them to catch-up
// goroutines in its last delivery before the room stays quiet for a few
// heartbeats (pings seen by the fast viewers); then the slow viewers read
// on. Every viewer must get a well-formed stream with every chat line in
// order, the viewer count must never go negative, the per-room cap must
// hold, and the count must come back to exactly zero.
func TestSlowViewersHeartbeatsAndCatchUps(t *testing.T) {
	const (
		viewers = 12
		rounds  = 16
		lag     = 1 // lines per round
		lines   = rounds * lag
	)
	f, count, negative, zero := countingFeed(Config{})
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return f, nil },
		Heartbeat: time.Millisecond, MaxViewers: viewers})
	fastAddr := serveFeedsBuf(t, h, nil, true, false)
	slowAddr := serveFeedsBuf(t, h, nil, true, true)

	phase := newProgress()                    // rounds published and followed by a quiet time
	fastRead := make([]atomic.Int64, viewers) // lines read by each fast viewer
	pings := make([]atomic.Int64, viewers)    // pings seen by each fast viewer
	seen := make(chan struct{}, 1)            // a fast viewer read a line or a ping
	errs := make(chan error, viewers)
	done := make(chan struct{}, viewers)
	clients := make([]*rawClient, viewers)
	timeout := time.After(30 * time.Second)
	var wg sync.WaitGroup
	for i := range viewers {
		slow := i%2 == 1
		addr := fastAddr
		if slow {
			addr = slowAddr
		}
		c := get(t, addr, "/rooms/r/events", nil)
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			tell := func() {
				select {
				case seen <- struct{}{}:
				default:
				}
			}
			last := int64(-1) // a new room's `room` event has id 0
			want := 0
			for {
				b, err := c.next()
				if err != nil {
					errs <- fmt.Errorf("viewer %d after line %d: %v", i, want, err)
					return
				}
				if b.kind == "ping" && !slow {
					pings[i].Add(1)
					tell()
				}
				if b.kind != "event" {
					continue
				}
				if int64(b.id) <= last {
					errs <- fmt.Errorf("viewer %d: id %d after %d", i, b.id, last)
					return
				}
				last = int64(b.id)
				if b.typ != wire.EventChat {
					continue
				}
				text := chatLine(t, b.data)
				if text == "end" && want == lines {
					done <- struct{}{}
					return
				}
				if n, _, _ := strings.Cut(text, ":"); n != fmt.Sprint(want) {
					errs <- fmt.Errorf("viewer %d: line %q, want number %d", i, text[:min(len(text), 20)], want)
					return
				}
				want++
				if !slow {
					fastRead[i].Store(int64(want))
					tell()
				} else if want%lag == 0 && want < lines && !phase.wait(want/lag+1, timeout) {
					// The next round piles up unread until it is over.
					errs <- fmt.Errorf("viewer %d: publisher stuck", i)
					return
				}
			}
		}()
	}
	// The cap holds: one viewer more is refused.
	if c, err := getStatus(slowAddr, "/rooms/r/events", nil); err == nil {
		c.Close()
		t.Fatalf("viewer %d of a room capped at %d was let in (count %d)", viewers+1, viewers, count.Load())
	}
	// awaitFast waits until every fast viewer meets cond.
	awaitFast := func(what string, cond func(i int) bool) {
		for i := 0; i < viewers; i += 2 {
			for !cond(i) {
				select {
				case err := <-errs:
					t.Fatal(err)
				case <-timeout:
					t.Fatalf("fast viewers stuck waiting for %s", what)
				case <-seen:
				}
			}
		}
	}

	pad := strings.Repeat("x", 48<<10) // more than a socket holds
	for r := range rounds {
		for n := r * lag; n < (r+1)*lag; n++ {
			snap(f, uint64(3*n+4))
			chat(f, fmt.Sprintf("%d:%s", n, pad)) // the round's last event
		}
		awaitFast("the round's lines", func(i int) bool { return fastRead[i].Load() == int64((r+1)*lag) })
		// A quiet time of a few heartbeats while the slow viewers do not read.
		var marks [viewers]int64
		for i := range marks {
			marks[i] = pings[i].Load()
		}
		awaitFast("pings", func(i int) bool { return pings[i].Load() >= marks[i]+3 })
		phase.set(r + 1)
	}
	chat(f, "end")
	for range viewers {
		select {
		case err := <-errs:
			t.Fatal(err)
		case <-done:
		case <-timeout:
			t.Fatal("viewers did not get every line")
		}
	}
	if negative.Load() {
		t.Fatal("the viewer count went negative")
	}
	if c, err := getStatus(slowAddr, "/rooms/r/events", nil); err == nil {
		c.Close()
		t.Fatalf("viewer %d of a room capped at %d was let in after the run (count %d)", viewers+1, viewers, count.Load())
	}
	for _, c := range clients {
		c.Close()
	}
	wg.Wait()
	select {
	case <-zero:
	case <-time.After(10 * time.Second):
		t.Fatalf("viewer count %d 10 s after every viewer left", count.Load())
	}
	waitUntil(t, "the streams to be counted closed", func() bool { return h.Stats().Streams == 0 })
	if n := count.Load(); n != 0 || negative.Load() || f.Viewers() != 0 {
		t.Fatalf("viewer count %d (feed %d) after every viewer left, went negative: %v", n, f.Viewers(), negative.Load())
	}
}
