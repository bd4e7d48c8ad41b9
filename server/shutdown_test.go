package server

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/wire"
)

// drains counts the goroutines writing out a player connection's last
// frames (its close handshake).
func drains() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "transport.(*Conn).drain(")
}

// TestShutdownWaitsForRefusedPlayers: a join refused (an unknown room)
// ends its session without reading on, and the close handshake waits for
// the peer's answer, which this client never sends. Shutdown returns only
// once that connection has finished; a WebSocket asked for while the
// server closes is refused with 503 before the upgrade.
func TestShutdownWaitsForRefusedPlayers(t *testing.T) {
	ts := start(t, Config{})
	ws, _, err := websocket.DefaultDialer.Dial(ts.ws, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Join{Name: "ana", Room: "nosuchroom"})); err != nil {
		t.Fatal(err)
	}
	// The refusal is written: the session has ended.
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), wire.CodeNotFound) {
		t.Fatalf("refusal: %q, %v", msg, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := drains(); n != 0 {
		t.Fatalf("%d connection writers still running after Shutdown returned", n)
	}
	resp, err := http.Get(strings.Replace(ts.ws, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a WebSocket asked for after the shutdown: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
}
