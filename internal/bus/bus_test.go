package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tickwire/tickwire/internal/natstest"
)

// pair returns two ends of one bus, as two nodes see it: the same Local
// twice, or two connections to one NATS server. Both close when the test
// ends.
type pair func(t *testing.T) (a, b Bus)

func implementations(t *testing.T) map[string]pair {
	url := natstest.Start(t)
	return map[string]pair{
		"local": func(t *testing.T) (Bus, Bus) {
			b := NewLocal()
			t.Cleanup(func() { b.Close() })
			return b, b
		},
		"nats": func(t *testing.T) (Bus, Bus) {
			conn := func() Bus {
				b, err := ConnectNATS(NATSConfig{URL: url})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				return b
			}
			return conn(), conn()
		},
	}
}

// collector gathers what a subscription receives.
type collector struct {
	mu   sync.Mutex
	msgs []string // "subject data"
	got  chan struct{}
}

func newCollector() *collector { return &collector{got: make(chan struct{}, 1<<16)} }

func (c *collector) handle(m *Msg) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m.Subject+" "+string(m.Data))
	c.mu.Unlock()
	c.got <- struct{}{}
}

// wait returns the first n messages, or fails after 5 s.
func (c *collector) wait(t *testing.T, n int) []string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-c.got:
		case <-timeout:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("got %d of %d messages: %q", len(c.msgs), n, c.msgs)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs[:n]...)
}

func (c *collector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

func mustSubscribe(t *testing.T, b Bus, subject string, h Handler) Subscription {
	t.Helper()
	s, err := b.Subscribe(subject, h)
	if err != nil {
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	t.Cleanup(func() { s.Unsubscribe() })
	return s
}

func TestBus(t *testing.T) {
	for name, newPair := range implementations(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("Wildcards", func(t *testing.T) { testWildcards(t, newPair) })
			t.Run("Order", func(t *testing.T) { testOrder(t, newPair) })
			t.Run("Unsubscribe", func(t *testing.T) { testUnsubscribe(t, newPair) })
			t.Run("Request", func(t *testing.T) { testRequest(t, newPair) })
			t.Run("BadSubjects", func(t *testing.T) { testBadSubjects(t, newPair) })
			t.Run("Close", func(t *testing.T) { testClose(t, newPair) })
		})
	}
}

// A message published on one node reaches the matching subscriptions of
// the other, and only those.
func testWildcards(t *testing.T, newPair pair) {
	a, b := newPair(t)
	one, star, tail, exact := newCollector(), newCollector(), newCollector(), newCollector()
	mustSubscribe(t, b, "tw.dir.*", star.handle)
	mustSubscribe(t, b, "tw.>", tail.handle)
	mustSubscribe(t, b, "tw.dir.n1", exact.handle)
	mustSubscribe(t, b, "other", one.handle)
	for _, subj := range []string{"tw.dir.n1", "tw.dir.n2", "tw.feed.r1.x", "tw", "other"} {
		if err := a.Publish(subj, []byte("hi")); err != nil {
			t.Fatalf("publish %s: %v", subj, err)
		}
	}
	if got, want := fmt.Sprint(star.wait(t, 2)), "[tw.dir.n1 hi tw.dir.n2 hi]"; got != want {
		t.Errorf("tw.dir.* got %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(tail.wait(t, 3)), "[tw.dir.n1 hi tw.dir.n2 hi tw.feed.r1.x hi]"; got != want {
		t.Errorf("tw.> got %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(exact.wait(t, 1)), "[tw.dir.n1 hi]"; got != want {
		t.Errorf("tw.dir.n1 got %s, want %s", got, want)
	}
	one.wait(t, 1) // "other" was published last: everything before it has arrived
	time.Sleep(50 * time.Millisecond)
	if n := len(star.all()) + len(tail.all()) + len(exact.all()); n != 6 {
		t.Errorf("%d deliveries, want 6: %q %q %q", n, star.all(), tail.all(), exact.all())
	}
}

// Messages from one publisher arrive in the order sent, and the publisher
// may reuse its buffer at once.
func testOrder(t *testing.T, newPair pair) {
	a, b := newPair(t)
	c := newCollector()
	mustSubscribe(t, b, "seq", c.handle)
	const n = 2000
	buf := make([]byte, 0, 8)
	for i := 0; i < n; i++ {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		if err := a.Publish("seq", buf); err != nil {
			t.Fatal(err)
		}
	}
	got := c.wait(t, n)
	for i, m := range got {
		if want := "seq " + strconv.Itoa(i); m != want {
			t.Fatalf("message %d is %q, want %q", i, m, want)
		}
	}
}

// After Unsubscribe nothing more is delivered to that subscription.
func testUnsubscribe(t *testing.T, newPair pair) {
	a, b := newPair(t)
	gone, marker := newCollector(), newCollector()
	s := mustSubscribe(t, b, "x", gone.handle)
	mustSubscribe(t, b, "marker", marker.handle)
	_ = a.Publish("x", []byte("1"))
	gone.wait(t, 1)
	if err := s.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsubscribe(); err != nil {
		t.Fatalf("second unsubscribe: %v", err)
	}
	if nb, ok := b.(*NATS); ok {
		_ = nb.Conn().Flush() // the server knows of the unsubscribe
	}
	_ = a.Publish("x", []byte("2"))
	_ = a.Publish("marker", []byte("m"))
	marker.wait(t, 1)
	time.Sleep(50 * time.Millisecond)
	if got := gone.all(); len(got) != 1 {
		t.Fatalf("after unsubscribe got %q", got)
	}
}

// A request gets the first answer; nobody listening is ErrNoResponders; a
// subscriber that never answers runs into the context's deadline.
func testRequest(t *testing.T, newPair pair) {
	a, b := newPair(t)
	mustSubscribe(t, b, "echo", func(m *Msg) {
		if err := m.Respond(bytes.ToUpper(m.Data)); err != nil {
			t.Errorf("respond: %v", err)
		}
	})
	var plain error
	gotPlain := make(chan struct{})
	mustSubscribe(t, b, "silent", func(m *Msg) {
		if string(m.Data) == "plain" {
			plain = m.Respond([]byte("x"))
			close(gotPlain)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := a.Request(ctx, "echo", []byte("hello"))
	if err != nil || string(got) != "HELLO" {
		t.Fatalf("request: %q, %v", got, err)
	}
	if _, err := a.Request(ctx, "nobody.here", []byte("?")); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("request without subscribers: %v, want ErrNoResponders", err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := a.Request(short, "silent", []byte("?")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v, want deadline exceeded", err)
	}
	_ = a.Publish("silent", []byte("plain"))
	<-gotPlain
	if !errors.Is(plain, ErrNoReply) {
		t.Fatalf("Respond to a publish: %v, want ErrNoReply", plain)
	}
}

func testBadSubjects(t *testing.T, newPair pair) {
	a, _ := newPair(t)
	for _, s := range []string{"", "a.*", "a.>", "a..b", ".a", "a b"} {
		if err := a.Publish(s, nil); !errors.Is(err, ErrBadSubject) {
			t.Errorf("publish %q: %v, want ErrBadSubject", s, err)
		}
	}
	for _, s := range []string{"", "a.>.b", "a..b", "a.b."} {
		if _, err := a.Subscribe(s, func(*Msg) {}); !errors.Is(err, ErrBadSubject) {
			t.Errorf("subscribe %q: %v, want ErrBadSubject", s, err)
		}
	}
}

// After Close, publishing and subscribing fail with ErrClosed and the
// subscriptions get nothing more; Close may be called twice.
func testClose(t *testing.T, newPair pair) {
	a, b := newPair(t)
	c := newCollector()
	mustSubscribe(t, b, "c", c.handle)
	_ = a.Publish("c", []byte("before"))
	c.wait(t, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := b.Publish("c", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if _, err := b.Subscribe("c", func(*Msg) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	if a != b {
		_ = a.Publish("c", []byte("after"))
		time.Sleep(100 * time.Millisecond)
	}
	if got := c.all(); len(got) != 1 {
		t.Fatalf("after close got %q", got)
	}
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a", "a.b", false},
		{"a.b", "a", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"*.b", "a.b", true},
		{"a.>", "a", false},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{">", "a.b", true},
		{"a.*.c", "a.x.c", true},
		{"a.*.c", "a.x.d", false},
	} {
		if got := matches(splitSubject(tc.pattern), tc.subject); got != tc.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}

// A subscriber too slow for MaxPending waiting messages loses the newer
// ones, and the publisher never waits for it.
func TestLocalDropsForASlowSubscriber(t *testing.T) {
	b := NewLocal()
	defer b.Close()
	release := make(chan struct{})
	defer close(release)
	var n int
	var mu sync.Mutex
	mustSubscribe(t, b, "s", func(*Msg) {
		<-release
		mu.Lock()
		n++
		mu.Unlock()
	})
	start := time.Now()
	for i := 0; i < MaxPending+100; i++ {
		if err := b.Publish("s", nil); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("publishing took %v", d)
	}
	// One message may have been taken by the handler before the queue
	// filled up.
	if d := b.Dropped(); d < 99 || d > 100 {
		t.Fatalf("dropped %d, want 99-100", d)
	}
}
