package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestWriteRetryError(t *testing.T) {
	for after, want := range map[time.Duration]string{
		0: "1", 300 * time.Millisecond: "1", time.Second: "1", 1400 * time.Millisecond: "2",
		1999 * time.Millisecond: "2", 5 * time.Second: "5", 10 * time.Second: "10",
	} {
		rec := httptest.NewRecorder()
		WriteRetryError(rec, http.StatusTooManyRequests, CodeRateLimited, "slow down", after)
		if got := rec.Header().Get("Retry-After"); got != want {
			t.Errorf("Retry-After for %v: %s, want %s", after, got, want)
		}
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 429 ||
			body.Error.Code != CodeRateLimited || body.Error.Message != "slow down" ||
			rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%d %s %v", rec.Code, rec.Body, err)
		}
	}
}

func TestSSE(t *testing.T) {
	b := AppendSSE([]byte("x"), 42, "chat", []byte(`{"a":1}`))
	b = AppendSSERetry(b, 2500*time.Millisecond)
	if want := "xid: 42\nevent: chat\ndata: {\"a\":1}\n\nretry: 2500\n\n"; string(b) != want {
		t.Errorf("%q, want %q", b, want)
	}
	for _, c := range []struct {
		header, query string
		want          int64
		ok            bool
	}{
		{"", "", -1, true}, {"7", "", 7, true}, {"", "8", 8, true}, {"7", "8", 7, true},
		{"-1", "", 0, false}, {"x", "", 0, false}, {"", "1.5", 0, false},
	} {
		r := httptest.NewRequest("GET", "/e?lastEventId="+c.query, nil)
		if c.header != "" {
			r.Header.Set("Last-Event-ID", c.header)
		}
		id, err := LastEventID(r)
		if id != c.want || (err == nil) != c.ok {
			t.Errorf("header %q, query %q: %d %v", c.header, c.query, id, err)
		}
	}
}
