package feed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// readStart reads a new SSE stream's first blocks: retry, room and snap.
func readStart(t *testing.T, c *rawClient) uint64 {
	t.Helper()
	var kinds []string
	for len(kinds) < 3 {
		b, err := c.next()
		if err != nil {
			t.Fatalf("stream start after %v: %v", kinds, err)
		}
		kinds = append(kinds, b.kind+":"+b.typ)
		if b.typ == wire.EventSnap {
			if fmt.Sprint(kinds) != "[retry: event:room event:snap]" {
				t.Fatalf("stream opened with %v", kinds)
			}
			return b.id
		}
	}
	t.Fatalf("stream opened with %v", kinds)
	return 0
}

// longLine is a chat line of about 16 KB, numbered n.
func longLine(n int) string { return fmt.Sprintf("%d:%s", n, strings.Repeat("y", 16<<10)) }

// TestSlowTLSViewerCatchesUp: a viewer over TLS (a taken-over *tls.Conn)
// that stops reading while more than its socket holds is published, then
// reads on within the write wait, gets every event, well formed. A write
// cut by the pump's short deadline would have broken the TLS connection
// for good in the middle of a record.
func TestSlowTLSViewerCatchesUp(t *testing.T) {
	const lines = 20
	f, count, negative, _ := countingFeed(Config{})
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return f, nil }, Heartbeat: time.Hour})
	srv, cli := testTLS(t)
	addr := serveFeeds(t, h, srv, true)
	c := get(t, addr, "/rooms/r/events", cli)
	defer c.Close()
	readStart(t, c)
	waitUntil(t, "the viewer to park", func() bool { v, _ := h.idleCount(f); return v == 1 })
	for n := range lines { // about 320 KB, unread
		chat(f, longLine(n))
	}
	waitUntil(t, "the pump to let go of the viewer", func() bool { v, _ := h.idleCount(f); return v == 0 })
	chat(f, "end")
	for want := 0; ; {
		b, err := c.next()
		if err != nil {
			t.Fatalf("after line %d of %d: %v", want, lines, err)
		}
		if b.typ != wire.EventChat {
			continue
		}
		text := chatLine(t, b.data)
		if text == "end" && want == lines {
			break
		}
		if text != longLine(want) {
			t.Fatalf("line %q, want number %d", text[:min(20, len(text))], want)
		}
		want++
	}
	waitUntil(t, "the viewer to park again", func() bool { v, _ := h.idleCount(f); return v == 1 })
	if count.Load() != 1 || negative.Load() {
		t.Fatalf("viewer count %d (went negative: %v), want 1", count.Load(), negative.Load())
	}
}

// TestSlowTLSViewerDroppedCleanly: a viewer over TLS that stops reading for
// longer than the write wait is dropped, once; what it had received is
// well formed up to where the connection ends.
func TestSlowTLSViewerDroppedCleanly(t *testing.T) {
	f, count, negative, zero := countingFeed(Config{})
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return f, nil }, Heartbeat: time.Hour,
		WriteWait: 200 * time.Millisecond})
	srv, cli := testTLS(t)
	addr := serveFeeds(t, h, srv, true)
	c := get(t, addr, "/rooms/r/events", cli)
	defer c.Close()
	last := readStart(t, c)
	waitUntil(t, "the viewer to park", func() bool { v, _ := h.idleCount(f); return v == 1 })
	for n := range 20 {
		chat(f, longLine(n))
	}
	select {
	case <-zero:
	case <-time.After(10 * time.Second):
		t.Fatalf("the viewer that stopped reading is still counted (%d)", count.Load())
	}
	for want := 0; ; {
		b, err := c.next()
		if errors.Is(err, errGarbled) {
			t.Fatal(err)
		}
		if err != nil {
			t.Logf("stream ended after line %d: %v", want, err)
			break
		}
		if b.id <= last {
			t.Fatalf("id %d after %d", b.id, last)
		}
		last = b.id
		if b.typ == wire.EventChat {
			if text := chatLine(t, b.data); text != longLine(want) {
				t.Fatalf("line %q, want number %d", text[:min(20, len(text))], want)
			}
			want++
		}
	}
	waitUntil(t, "the stream to be counted closed", func() bool { return h.Stats().Streams == 0 })
	if count.Load() != 0 || negative.Load() {
		t.Fatalf("viewer count %d (went negative: %v) after the drop", count.Load(), negative.Load())
	}
}

// TestTakenOverTLSPollAnswersWhole: a long-poll taken over on TLS whose
// answer is larger than its socket holds gets all of it.
func TestTakenOverTLSPollAnswersWhole(t *testing.T) {
	f, _, _, zero := countingFeed(Config{})
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return f, nil }})
	srv, cli := testTLS(t)
	addr := serveFeeds(t, h, srv, true)
	cursor := f.Read(-1, Coalesce).Last
	c, err := send(addr, fmt.Sprintf("/rooms/r/poll?after=%d&timeout=30", cursor), cli)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, "the poll to be taken over", func() bool { _, p := h.idleCount(f); return p == 1 })
	huge := strings.Repeat("z", 320<<10) // unread
	chat(f, huge)
	waitUntil(t, "the pump to answer", func() bool { _, p := h.idleCount(f); return p == 0 })
	status, header, err := c.head()
	if err != nil || status != "HTTP/1.1 200 OK" {
		t.Fatalf("answer %q: %v", status, err)
	}
	size, _ := strconv.Atoi(header["content-length"])
	body := make([]byte, size)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatalf("answer body (%d bytes): %v", size, err)
	}
	var a struct {
		Events []struct {
			Type string
			Data json.RawMessage
		}
	}
	if err := json.Unmarshal(body, &a); err != nil || len(a.Events) == 0 {
		t.Fatalf("answer of %d events: %v", len(a.Events), err)
	}
	if e := a.Events[0]; e.Type != wire.EventChat || chatLine(t, string(e.Data)) != huge {
		t.Fatalf("answer begins with %s", e.Type)
	}
	select {
	case <-zero:
	case <-time.After(10 * time.Second):
		t.Fatal("the answered poll is still counted")
	}
}
