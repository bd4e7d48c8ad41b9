package feed

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tickwire/tickwire/wire"
)

// FuzzFeedQuery sends arbitrary query strings and Last-Event-ID headers to
// the long-poll and SSE handlers of an ended room's feed: every answer is a
// 200 with a well-formed body or a 400 with the JSON error shape.
func FuzzFeedQuery(f *testing.F) {
	for _, seed := range [][2]string{
		{"after=3&timeout=10", ""}, {"after=-1", ""}, {"after=abc", "x"}, {"timeout=1e309", "18446744073709551616"},
		{"after=&timeout=NaN", "-5"}, {"lastEventId=2&after=9223372036854775807", "007"}, {"%zz", " 1"},
	} {
		f.Add(seed[0], seed[1])
	}
	fd := New(Config{History: 4}, nil)
	fd.Opened(wire.SpectatorRoom{ID: "r", Hz: 30})
	for i := 0; i < 6; i++ {
		fd.Chat(&wire.ChatLine{ID: 1, Name: "a", Text: "x"})
	}
	fd.Closed("idle") // answers never wait on an ended feed
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return fd, nil }})
	f.Fuzz(func(t *testing.T, query, lastID string) {
		for _, path := range []string{"/rooms/r/poll", "/rooms/r/events"} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL = &url.URL{Path: path, RawQuery: query}
			if strings.ContainsAny(lastID, "\r\n\x00") {
				lastID = ""
			}
			req.Header.Set("Last-Event-ID", lastID)
			req.SetPathValue("room", "r")
			rec := httptest.NewRecorder()
			if strings.HasSuffix(path, "poll") {
				h.Poll(rec, req)
			} else {
				h.SSE(rec, req)
			}
			switch rec.Code {
			case http.StatusOK:
				if strings.HasSuffix(path, "poll") && !json.Valid(rec.Body.Bytes()) {
					t.Fatalf("%s?%s: invalid JSON %q", path, query, rec.Body.String())
				}
			case http.StatusBadRequest:
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error.Code == "" {
					t.Fatalf("%s?%s: 400 without the error shape: %q", path, query, rec.Body.String())
				}
			default:
				t.Fatalf("%s?%s (Last-Event-ID %q): status %d", path, query, lastID, rec.Code)
			}
		}
	})
}
