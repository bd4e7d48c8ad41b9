// Package httpapi holds the plumbing shared by Tickwire's HTTP endpoints:
// the error shape of the contract, JSON answers and the framing of
// Server-Sent Events streams.
package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error codes of HTTP error answers.
const (
	CodeBadRequest   = "bad-request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not-found"
	CodeGone         = "gone"
	CodeRateLimited  = "rate-limited"
	CodeUnavailable  = "unavailable"
	CodeOverloaded   = "overloaded" // the node is past its capacity (503)
)

// WriteJSON answers with status and v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers {"error":{"code","message"}} with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	WriteJSON(w, status, map[string]body{"error": {Code: code, Message: message}})
}

// WriteRetryError is WriteError with a Retry-After header: after in whole
// seconds, rounded up (a retry any earlier would be refused again), at
// least 1.
func WriteRetryError(w http.ResponseWriter, status int, code, message string, after time.Duration) {
	secs := (after + time.Second - 1) / time.Second
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(secs))))
	WriteError(w, status, code, message)
}
