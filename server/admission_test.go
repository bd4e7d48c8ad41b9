package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/wire"
)

// Tests of admission: per-client room rate, typing throttle, client
// addresses behind trusted proxies.

// postRoom creates a room as the client named in X-Forwarded-For (none
// when xff is empty) and returns the status, the error code and the
// Retry-After header.
func postRoom(t *testing.T, base, xff string) (status int, code, retry string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/rooms", strings.NewReader(`{"private":true}`))
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("POST /api/rooms: %v", err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code, resp.Header.Get("Retry-After")
}

// syncBuffer is a log destination tests read from.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRoomCreationIsLimitedPerClient(t *testing.T) {
	var logs syncBuffer
	ts := start(t, Config{TrustedProxies: []string{"127.0.0.0/8", "::1"},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	base := ts.http.URL
	// The default: bursts of 5, then 429 with Retry-After.
	for i := 0; i < 5; i++ {
		if status, code, _ := postRoom(t, base, "203.0.113.1"); status != http.StatusCreated {
			t.Fatalf("room %d of a burst of 5: %d %s", i+1, status, code)
		}
	}
	status, code, retry := postRoom(t, base, "203.0.113.1")
	if secs, err := strconv.Atoi(retry); status != http.StatusTooManyRequests || code != wire.CodeRateLimited || err != nil || secs < 1 {
		t.Fatalf("the 6th room at once: %d %q Retry-After %q, want 429 rate-limited with Retry-After", status, code, retry)
	}
	// Per client: another one may create rooms, and so may loopback tools.
	if status, _, _ := postRoom(t, base, "203.0.113.2"); status != http.StatusCreated {
		t.Fatalf("another client: %d", status)
	}
	for i := 0; i < 7; i++ {
		if status, _, _ := postRoom(t, base, ""); status != http.StatusCreated {
			t.Fatalf("loopback room %d: %d", i+1, status)
		}
	}
	if !strings.Contains(logs.String(), "client=203.0.113.2") {
		t.Errorf("the room created log line does not name the client:\n%s", logs.String())
	}

	// `auto` that would need a new room: error rate-limited, close 4029.
	xff := http.Header{"X-Forwarded-For": {"203.0.113.1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := player.Dial(ctx, player.Options{URL: ts.ws, Name: "ana", Room: "auto", Mode: "shooter", Header: xff})
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeRateLimited || je.CloseCode != wire.CloseRateLimited {
		t.Fatalf("auto making a room over the rate: %v, want rate-limited and 4029", err)
	}
	// `auto` that finds a room is not limited.
	open := createRoom(t, ts, `{"mode":"shooter"}`)
	c, err := player.Dial(ctx, player.Options{URL: ts.ws, Name: "ana", Room: "auto", Mode: "shooter", Header: xff})
	if err != nil {
		t.Fatalf("auto into an open room over the rate: %v", err)
	}
	defer c.Close()
	if c.Welcome().Room != open {
		t.Fatalf("auto joined %s, want the open room %s", c.Welcome().Room, open)
	}
}

func TestTypingIsForwardedOncePerSecond(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", a.Welcome().Room)
	next[*wire.Joined](t, a)
	began := time.Now()
	for i := 0; i < 10; i++ {
		if err := a.Typing(); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.Chat("mark")
	// Ben sees one `typing` before the chat line sent after the ten.
	typing := 0
	for done := false; !done; {
		switch m := next[wire.ServerMessage](t, b).(type) {
		case *wire.TypingFrom:
			typing++
		case *wire.ChatLine:
			done = m.Text == "mark"
		}
	}
	if typing != 1 {
		t.Fatalf("ben got %d typing for 10 sent at once, want 1", typing)
	}
	// Ana is told nothing: the extra ones are dropped silently.
	for done := false; !done; {
		switch m := next[wire.ServerMessage](t, a).(type) {
		case *wire.Error:
			t.Fatalf("typing over the limit got %+v", m)
		case *wire.ChatLine:
			done = m.Text == "mark"
		}
	}
	// The next one goes through once a second has passed since the first.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if a.Typing() != nil {
					return
				}
			}
		}
	}()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-b.Messages():
			if !ok {
				t.Fatalf("ben's connection ended: %v", b.Err())
			}
			if _, ok := m.(*wire.TypingFrom); ok {
				if d := time.Since(began); d < time.Second {
					t.Fatalf("a second typing %v after the first was sent", d)
				}
				return
			}
		case <-timeout:
			t.Fatal("no typing forwarded again after a second")
		}
	}
}

// openSSE opens a spectator stream with the given headers on a connection
// of its own; it returns the status and the connection (nil unless 200).
func openSSE(addr, room string, header http.Header) (int, net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, nil, err
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET /rooms/%s/events HTTP/1.1\r\nHost: %s\r\n", room, addr)
	_ = header.Write(&req)
	req.WriteString("\r\n")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req.Bytes()); err != nil {
		c.Close()
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return 0, nil, err
	}
	_ = c.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return resp.StatusCode, nil, nil
	}
	return resp.StatusCode, c, nil
}

// rawSSE is openSSE that fails the test on an error and closes the stream
// when the test ends.
func rawSSE(t *testing.T, addr, room string, header http.Header) (int, net.Conn) {
	t.Helper()
	status, c, err := openSSE(addr, room, header)
	if err != nil {
		t.Fatalf("SSE %v: %v", header, err)
	}
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return status, c
}

func TestClientAddressBehindTrustedProxies(t *testing.T) {
	spoofs := []http.Header{
		{"X-Forwarded-For": {"203.0.113.7"}},
		{"X-Forwarded-For": {"198.51.100.1, 203.0.113.7"}},
		{"Forwarded": {`for="203.0.113.7:4711";proto=https`}},
	}
	// From an address that is not trusted, the headers are ignored: every
	// stream is loopback's, which the per-client limits exempt.
	t.Run("untrusted", func(t *testing.T) {
		ts := start(t, Config{TrustedProxies: []string{"10.0.0.0/8"}, MaxConnsPerIP: 1})
		room := createRoom(t, ts, `{}`)
		addr := strings.TrimPrefix(ts.http.URL, "http://")
		for i, h := range append(spoofs, spoofs...) {
			if status, _ := rawSSE(t, addr, room, h); status != http.StatusOK {
				t.Fatalf("stream %d (%v) from an untrusted address: %d", i, h, status)
			}
		}
		for i := 0; i < 7; i++ {
			if status, _, _ := postRoom(t, ts.http.URL, "203.0.113.7"); status != http.StatusCreated {
				t.Fatalf("room %d with a spoofed X-Forwarded-For: %d", i+1, status)
			}
		}
	})
	// From a trusted proxy, the client named is the one counted.
	t.Run("trusted", func(t *testing.T) {
		ts := start(t, Config{TrustedProxies: []string{"127.0.0.0/8", "::1"}, MaxConnsPerIP: 1})
		room := createRoom(t, ts, `{}`)
		addr := strings.TrimPrefix(ts.http.URL, "http://")
		if status, _ := rawSSE(t, addr, room, spoofs[0]); status != http.StatusOK {
			t.Fatalf("first stream of 203.0.113.7: %d", status)
		}
		for _, h := range append(spoofs, http.Header{"X-Forwarded-For": {"203.0.113.7, 127.0.0.9"}}) {
			if status, _ := rawSSE(t, addr, room, h); status != http.StatusTooManyRequests {
				t.Fatalf("second stream of 203.0.113.7 as %v: %d, want 429", h, status)
			}
		}
		for _, h := range []http.Header{
			{"X-Forwarded-For": {"203.0.113.8"}},
			{"Forwarded": {`for=192.0.2.60;proto=http, for=203.0.113.9`}},
			{"X-Forwarded-For": {"203.0.113.7, 2001:db8::1"}},
			{}, // the proxy itself: loopback
			{},
		} {
			if status, _ := rawSSE(t, addr, room, h); status != http.StatusOK {
				t.Fatalf("a stream of another client (%v): %d", h, status)
			}
		}
		// A player's WebSocket counts for the same client.
		_, resp, err := websocket.DefaultDialer.Dial(ts.ws, spoofs[1])
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("WebSocket of 203.0.113.7 over its cap: %v", err)
		}
		// And so does the room rate.
		for i := 0; i < 5; i++ {
			if status, _, _ := postRoom(t, ts.http.URL, "198.51.100.1, 203.0.113.7"); status != http.StatusCreated {
				t.Fatalf("room %d: %d", i+1, status)
			}
		}
		if status, _, _ := postRoom(t, ts.http.URL, "203.0.113.7"); status != http.StatusTooManyRequests {
			t.Fatalf("6th room of 203.0.113.7 under another spoofed left part: %d", status)
		}
	})
}
