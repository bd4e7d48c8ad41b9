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
