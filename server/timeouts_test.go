package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/wire"
)

// serveReal runs a server with cfg through Serve, on its own http.Server
// on 127.0.0.1, and returns it with its host:port; it is stopped when the
// test ends.
func serveReal(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	return serveOn(t, cfg, nil)
}

// serveOn is serveReal on ln (nil: the one Listen opens).
func serveOn(t *testing.T, cfg Config, ln net.Listener) (*Server, string) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s := New(testConfig(cfg))
	if ln == nil {
		var err error
		if ln, err = s.Listen(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return s, ln.Addr().String()
}

// shortTimeouts are the HTTP timeouts of these tests: every phase of a
// request is bounded by 300 ms.
func shortTimeouts() Config {
	const d = 300 * time.Millisecond
	return Config{HeaderTimeout: d, BodyTimeout: d, WriteTimeout: d, IdleTimeout: d,
		FeedHeartbeat: 100 * time.Millisecond}
}

// cutWithin waits for the server to close c, failing if it has not within
// 5 s; it returns how long that took from since.
func cutWithin(t *testing.T, c net.Conn, r io.Reader, since time.Time) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", time.Since(since).Round(time.Millisecond))
	}
	return time.Since(since)
}

func TestHTTPTimeouts(t *testing.T) {
	cfg := shortTimeouts()
	_, addr := serveReal(t, cfg)
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("slow headers", func(t *testing.T) {
		c := dial()
		began := time.Now()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n", addr) // and no blank line
		if d := cutWithin(t, c, c, began); d < cfg.HeaderTimeout*9/10 {
			t.Fatalf("cut after %v, before the header timeout", d)
		}
	})

	t.Run("slow body", func(t *testing.T) {
		c := dial()
		began := time.Now()
		fmt.Fprintf(c, "POST /api/rooms HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", addr)
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("a body that never comes: %d, want 400 or a cut", resp.StatusCode)
			}
		}
		if d := cutWithin(t, c, br, began); d < cfg.BodyTimeout*9/10 {
			t.Fatalf("cut after %v, before the body timeout", d)
		}
	})

	t.Run("big body", func(t *testing.T) {
		big := `{"mode":"` + strings.Repeat("x", 1<<20) + `"}`
		resp, err := http.Post("http://"+addr+"/api/rooms", "application/json", strings.NewReader(big))
		if err != nil {
			return // cut while sending: bounded too
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("a 1 MiB body: %d", resp.StatusCode)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("healthz: %d, close %v", resp.StatusCode, resp.Close)
		}
		idle := time.Now()
		if d := cutWithin(t, c, br, idle); d < cfg.IdleTimeout*9/10 {
			t.Fatalf("idle connection cut after %v, before the idle timeout", d)
		}
	})
}

// TestLongLivedStreamsOutliveTheTimeouts: with every HTTP timeout at
// 300 ms, an SSE stream (even on a connection whose previous request was a
// short one), a long-poll parked for 2 s and a player's WebSocket go on
// for several times that.
func TestLongLivedStreamsOutliveTheTimeouts(t *testing.T) {
	cfg := shortTimeouts()
	cfg.PingEvery = 200 * time.Millisecond
	_, addr := serveReal(t, cfg)
	base := "http://" + addr
	newRoom := func() string {
		resp, err := http.Post(base+"/api/rooms", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var info struct{ ID string }
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create room: %d %v", resp.StatusCode, err)
		}
		return info.ID
	}
	room, still := newRoom(), newRoom() // the player plays in room; still has nobody
	// still's feed: its room event and its one snapshot, then nothing.
	var first pollAnswer
	getJSON(t, base+"/rooms/"+still+"/poll", &first)
	for !hasSnap(first) {
		getJSON(t, fmt.Sprintf("%s/rooms/%s/poll?after=%d&timeout=5", base, still, first.Last), &first)
	}
	const outlive = 1500 * time.Millisecond // 5 times every timeout

	sse := func(t *testing.T, afterShort bool) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if afterShort { // a short answer first: its write deadline must not stay
			fmt.Fprintf(c, "GET /api/modes HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		fmt.Fprintf(c, "GET /rooms/%s/events HTTP/1.1\r\nHost: %s\r\n\r\n", room, addr)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("SSE: %v %v", resp, err)
		}
		began, pings := time.Now(), 0
		for time.Since(began) < outlive {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("SSE stream ended after %v (%d heartbeats): %v", time.Since(began), pings, err)
			}
			if strings.HasPrefix(line, ": ping") {
				pings++
			}
		}
		if pings < 3 {
			t.Fatalf("%d heartbeats in %v", pings, outlive)
		}
	}
	t.Run("sse", func(t *testing.T) { t.Parallel(); sse(t, false) })
	t.Run("sse after a short request", func(t *testing.T) { t.Parallel(); sse(t, true) })

	// A WebSocket upgraded on a keep-alive connection whose previous
	// request was a short one: that one's write deadline passes while the
	// WebSocket runs.
	t.Run("websocket after a short request", func(t *testing.T) {
		t.Parallel()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /api/modes HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = c.SetReadDeadline(time.Time{})
		ws, _, err := websocket.NewClient(c, &url.URL{Scheme: "ws", Host: addr, Path: "/ws/play"}, nil, 1024, 1024)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Join{Name: "ben", Room: room})); err != nil {
			t.Fatal(err)
		}
		began, frames := time.Now(), 0
		for time.Since(began) < outlive {
			_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := ws.ReadMessage(); err != nil {
				t.Fatalf("WebSocket ended after %v (%d frames): %v", time.Since(began), frames, err)
			}
			frames++
		}
	})

	t.Run("parked poll", func(t *testing.T) {
		t.Parallel()
		began := time.Now()
		var a pollAnswer
		getJSON(t, fmt.Sprintf("%s/rooms/%s/poll?after=%d&timeout=2", base, still, first.Last), &a)
		if took := time.Since(began); took < 1900*time.Millisecond || len(a.Events) != 0 || a.Last != first.Last {
			t.Fatalf("parked poll answered after %v: %+v", took, a)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := player.Dial(ctx, player.Options{URL: "ws://" + addr + "/ws/play", Name: "ana", Room: room})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		began := time.Now()
		for time.Since(began) < outlive {
			next[*wire.Snap](t, c)
		}
		if err := c.Ping(); err != nil {
			t.Fatal(err)
		}
		next[*wire.Pong](t, c)
	})
}

// hasSnap reports whether a poll answer carries a snapshot.
func hasSnap(a pollAnswer) bool {
	for _, e := range a.Events {
		if e.Type == wire.EventSnap {
			return true
		}
	}
	return false
}
