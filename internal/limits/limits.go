// Package limits caps long-lived connections, in total and per client
// address, limits how often each client may do something (Rates), and
// tells a request's client behind trusted reverse proxies (Proxies). A
// request holds its slot while its handler runs; a handler that keeps the
// connection after returning (a taken-over SSE stream) takes the slot with
// Detach and releases it when the connection closes.
//
// A Limiter is safe for concurrent use.
package limits

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/tickwire/tickwire/internal/httpapi"
)

// Limiter counts open connections.
type Limiter struct {
	maxTotal, maxPerIP int
	onReject           func(reason string)

	mu    sync.Mutex // guards total and perIP
	total int
	perIP map[string]int
}

// Rejection reasons passed to the onReject hook.
const (
	ReasonTotal = "conn-limit"
	ReasonPerIP = "ip-limit"
)

// New returns a limiter; a max of 0 or less means no cap. onReject, when
// set, is told of each refused request.
func New(maxTotal, maxPerIP int, onReject func(reason string)) *Limiter {
	return &Limiter{maxTotal: maxTotal, maxPerIP: maxPerIP, onReject: onReject, perIP: make(map[string]int)}
}

// Caps returns the caps in force, 0 meaning none.
func (l *Limiter) Caps() (total, perIP int) { return max(l.maxTotal, 0), max(l.maxPerIP, 0) }

// Open returns the number of connections held now.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// acquire takes a slot for the client address ip. Loopback clients (local
// tools, or a reverse proxy on the same machine that is not trusted, whose
// clients all look alike) count in the total only.
func (l *Limiter) acquire(ip string) string {
	loopback := IsLoopback(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.maxTotal > 0 && l.total >= l.maxTotal:
		return ReasonTotal
	case l.maxPerIP > 0 && !loopback && l.perIP[ip] >= l.maxPerIP:
		return ReasonPerIP
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *Limiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// slot is a held connection, in the request's context.
type slot struct {
	once     sync.Once
	release  func()
	detached bool
}

type slotKey struct{}

// Wrap limits the requests next serves: over the total cap it answers 503,
// over the per-client cap 429, both with Retry-After. The client is the
// one ClientIP names (behind a trusted proxy, the proxy's client).
func (l *Limiter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := ClientIP(r)
		if reason := l.acquire(ip); reason != "" {
			if l.onReject != nil {
				l.onReject(reason)
			}
			status, msg := http.StatusServiceUnavailable, "the server has too many connections"
			if reason == ReasonPerIP {
				status, msg = http.StatusTooManyRequests, "too many connections from your address"
			}
			httpapi.WriteRetryError(w, status, httpapi.CodeUnavailable, msg, 5*time.Second)
			return
		}
		s := &slot{release: func() { l.release(ip) }}
		defer func() {
			if !s.detached {
				s.once.Do(s.release)
			}
		}()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), slotKey{}, s)))
	})
}

// Detach hands the request's slot to the caller, who must call the
// returned function once the connection is closed. Outside a limited
// request it returns a function that does nothing.
func Detach(ctx context.Context) (release func()) {
	s, ok := ctx.Value(slotKey{}).(*slot)
	if !ok {
		return func() {}
	}
	s.detached = true
	return func() { s.once.Do(s.release) }
}
