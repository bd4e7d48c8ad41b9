package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// SSEPing is the comment block a Server-Sent Events stream sends to show
// it is alive when it has had no event for a while.
const SSEPing = ": ping\n\n"

// errEventID is the error of an event id that is not an integer >= 0.
var errEventID = errors.New("event ids are integers >= 0")

// ParseEventID reads an event id: -1 when s is empty, an error when it is
// not an integer >= 0.
func ParseEventID(s string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 0 {
		return 0, errEventID
	}
	return id, nil
}

// LastEventID reads the id a Server-Sent Events client resumes after: its
// Last-Event-ID header or, without one, the lastEventId query parameter
// (for clients that cannot set headers). It is -1 when neither is given,
// an error when the id is not an integer >= 0 (see ParseEventID).
func LastEventID(r *http.Request) (int64, error) {
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("lastEventId")
	}
	return ParseEventID(last)
}

// SetSSEHeaders sets the headers of a Server-Sent Events response: its
// content type, no caching, and no buffering by a proxy in front.
func SetSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// AppendSSE appends a Server-Sent Events block to dst: the id, event and
// data lines and the blank line that ends the block. data must hold no
// newline (a JSON document does not); it ends 2 bytes before the end of
// the result.
func AppendSSE(dst []byte, id uint64, event string, data []byte) []byte {
	dst = append(dst, "id: "...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, "\nevent: "...)
	dst = append(dst, event...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

// AppendSSERetry appends the block that tells a Server-Sent Events client
// to wait d (in whole milliseconds) before it reconnects.
func AppendSSERetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
	return append(dst, "\n\n"...)
}
