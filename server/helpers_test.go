package server

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/wire"
)

// testServer is a Tickwire server on loopback.
type testServer struct {
	*Server
	http *httptest.Server
	ws   string // ws://.../ws/play
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is cfg with the defaults of a test's server: a quiet logger,
// and no refusals for overload unless the test sets OverloadHold. A loaded
// test machine (the race detector, tests side by side) runs ticks late and
// delays goroutines without the server being past its capacity.
func testConfig(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.OverloadHold == 0 {
		cfg.NoOverload = true
	}
	return cfg
}

// start runs a server with testConfig(cfg) on 127.0.0.1 and stops it when
// the test ends.
func start(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s := New(testConfig(cfg))
	hs := httptest.NewUnstartedServer(s.Handler())
	s.configureHTTP(hs.Config) // the timeouts of Serve
	hs.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return &testServer{Server: s, http: hs, ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/play"}
}

// join connects a player and closes it when the test ends.
func (ts *testServer) join(t *testing.T, name, room string) *player.Client {
	t.Helper()
	c, err := ts.dial(name, room, "")
	if err != nil {
		t.Fatalf("join %s to %s: %v", name, room, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (ts *testServer) dial(name, room, resume string) (*player.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return player.Dial(ctx, player.Options{URL: ts.ws, Name: name, Room: room, Resume: resume})
}

// next returns the next message of type T from c, skipping others, or fails
// the test after a generous wait.
func next[T wire.ServerMessage](t *testing.T, c *player.Client) T {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				var zero T
				t.Fatalf("connection ended while waiting for %T: %v", zero, c.Err())
			}
			if v, ok := m.(T); ok {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("no %T within 5s", zero)
		}
	}
}

// noMessage checks that c receives no message of type T within d.
func noMessage[T wire.ServerMessage](t *testing.T, c *player.Client, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return
			}
			if v, ok := m.(T); ok {
				t.Fatalf("unexpected %T: %+v", v, v)
			}
		case <-timeout:
			return
		}
	}
}

// closed waits for c's connection to end and returns the close code.
func closed(t *testing.T, c *player.Client) int {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-c.Messages():
			if !ok {
				return player.CloseCode(c.Err())
			}
		case <-timeout:
			t.Fatal("connection not closed within 5s")
		}
	}
}

// checkGoroutines fails if the goroutine count does not come back near
// base once everything has been closed.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func msgpackMarshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// keepMoving steers c in circles until the test ends, so that its room's
// state changes every tick.
func keepMoving(t *testing.T, c *player.Client) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for a := 0.0; ; a += 0.3 {
			select {
			case <-stop:
				return
			case <-c.Done():
				return
			case <-tick.C:
				if _, err := c.Input(math.Cos(a), math.Sin(a)); err != nil {
					return
				}
			}
		}
	}()
}
