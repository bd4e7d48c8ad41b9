package limits

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rates limit how often each client may do something (create a room): a
// token bucket per client address, refilled at a rate per second up to a
// burst. Loopback clients and the empty address (a caller that is not a
// network client) are not limited, as for the connection caps. The buckets
// of clients that have been quiet long enough to refill are forgotten, so
// memory follows the clients active lately.
//
// A nil *Rates limits nothing. Rates are safe for concurrent use.
type Rates struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex // guards buckets and sweepAt
	buckets map[string]*rate.Limiter
	sweepAt time.Time
}

// NewRates returns per-client limits of perSecond with bursts of burst;
// when either is 0 or less, nil: no limit.
func NewRates(perSecond float64, burst int) *Rates {
	if perSecond <= 0 || burst <= 0 {
		return nil
	}
	return &Rates{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*rate.Limiter)}
}

// Take takes one event of client at now. It returns 0 when the event is
// allowed, else how long until it would be (the event is not counted).
func (r *Rates) Take(client string, now time.Time) (wait time.Duration) {
	if r == nil || client == "" || IsLoopback(client) {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked(now)
	b := r.buckets[client]
	if b == nil {
		b = rate.NewLimiter(r.limit, r.burst)
		r.buckets[client] = b
	}
	if b.AllowN(now, 1) {
		return 0
	}
	missing := 1 - b.TokensAt(now)
	return max(time.Millisecond, time.Duration(missing/float64(r.limit)*float64(time.Second)))
}

// Clients returns how many clients have a bucket (for tests).
func (r *Rates) Clients() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buckets)
}

// sweepLocked forgets, at most once per refill time, the buckets that have
// refilled: such a client is as new.
func (r *Rates) sweepLocked(now time.Time) {
	if now.Before(r.sweepAt) {
		return
	}
	for c, b := range r.buckets {
		if b.TokensAt(now) >= float64(r.burst) {
			delete(r.buckets, c)
		}
	}
	refill := time.Duration(float64(r.burst) / float64(r.limit) * float64(time.Second))
	r.sweepAt = now.Add(min(max(refill, time.Second), time.Minute))
}
