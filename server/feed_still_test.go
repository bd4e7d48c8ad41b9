package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/wire"
)

// feedGet opens url with client, Last-Event-ID set unless empty, and
// checks the answer's status and protocol.
func feedGet(t *testing.T, client *http.Client, url, proto, lastID string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Proto != proto {
		t.Fatalf("GET %s: %d over %s", url, resp.StatusCode, resp.Proto)
	}
	return resp
}

// streamStart reads the first blocks of an SSE stream: `retry:`, then
// events of the given types, at once (the client's timeout is generous).
func streamStart(t *testing.T, client *http.Client, url, proto, lastID string, types ...string) []sseEvent {
	t.Helper()
	s := newSSEReader(feedGet(t, client, url, proto, lastID).Body)
	if b, err := s.next(); err != nil || b.kind != "retry:" {
		t.Fatalf("stream (Last-Event-ID %q) opened with %+v: %v", lastID, b, err)
	}
	var got []sseEvent
	for len(got) < len(types) {
		e, err := s.next()
		if err != nil {
			t.Fatalf("stream (Last-Event-ID %q) after %d of %v: %v", lastID, len(got), types, err)
		}
		if e.kind != "event" {
			continue
		}
		if e.typ != types[len(got)] {
			t.Fatalf("stream (Last-Event-ID %q): event %d is %s, want %v", lastID, len(got), e.typ, types)
		}
		got = append(got, e)
	}
	return got
}

// pollTypes polls url and returns the types of the events answered, with
// the id of the first and the answer's last.
func pollTypes(t *testing.T, client *http.Client, url, proto string) (types string, first, last uint64) {
	t.Helper()
	var a pollAnswer
	if err := json.NewDecoder(feedGet(t, client, url, proto, "").Body).Decode(&a); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	var ts []string
	for _, e := range a.Events {
		ts = append(ts, e.Type)
	}
	if len(a.Events) > 0 {
		first = a.Events[0].ID
	}
	return strings.Join(ts, ","), first, a.Last
}

// TestFeedStillRoomStartsAndResumesAtOnce: in a fresh room with one idle
// player, whose state stands still (no snapshot published after the first
// ones), a new SSE viewer gets `retry:`, `room` and the newest `snap` at
// once, and so does a new long-poll; an SSE resume after chat gets the
// chat lines then a `snap` at once, and a long-poll after the last
// snapshot the chat lines at once; over HTTP/1.1 (a connection taken over)
// and HTTP/2.
func TestFeedStillRoomStartsAndResumesAtOnce(t *testing.T) {
	cfg := Config{PingEvery: time.Hour} // no pings: the player's row never changes
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			var base string
			var p *player.Client
			client := &http.Client{Timeout: 5 * time.Second}
			if proto == "HTTP/1.1" {
				ts := start(t, cfg)
				p, base = ts.join(t, "ana", "auto"), ts.http.URL
			} else {
				ts := startTLS(t, cfg, false)
				p, base = ts.join(t, "ana", "auto"), "https://"+ts.addr
				var protos http.Protocols
				protos.SetHTTP2(true)
				client.Transport = &http.Transport{TLSClientConfig: ts.tls, Protocols: &protos}
			}
			base += "/rooms/" + p.Welcome().Room
			next[*wire.Snap](t, p)
			next[*wire.Snap](t, p)

			opened := streamStart(t, client, base+"/events", proto, "", wire.EventRoom, wire.EventSnap)
			seen := opened[1].id
			_, _, polled := pollTypes(t, client, base+"/poll", proto)
			for _, text := range []string{"one", "two", "three"} {
				if err := p.Chat(text); err != nil {
					t.Fatal(err)
				}
				next[*wire.ChatLine](t, p)
			}
			resumed := streamStart(t, client, base+"/events", proto, fmt.Sprint(seen),
				wire.EventChat, wire.EventChat, wire.EventChat, wire.EventSnap)
			if resumed[0].id <= seen {
				t.Fatalf("resume after %d began with id %d", seen, resumed[0].id)
			}
			// Nothing missed since the last chat line: the newest snapshot.
			streamStart(t, client, base+"/events", proto, fmt.Sprint(resumed[2].id), wire.EventSnap)

			if types, _, _ := pollTypes(t, client, base+"/poll", proto); types != "room,snap" {
				t.Fatalf("new poll: %s", types)
			}
			// A poll after the snapshot, at once: the chat lines, and no
			// snapshot of a state it has (snapshots are coalesced to the
			// newest state after `after`).
			types, first, last := pollTypes(t, client, fmt.Sprintf("%s/poll?after=%d&timeout=5", base, polled), proto)
			if types != "chat,chat,chat" || first <= polled || last != resumed[2].id {
				t.Fatalf("poll after %d: %s from %d to %d, want chat x3 to %d", polled, types, first, last, resumed[2].id)
			}
		})
	}
}
