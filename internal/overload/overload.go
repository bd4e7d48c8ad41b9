// Package overload tells when a node is past its capacity, from how late
// its rooms' ticks start. A room ticks on a fixed schedule; when the
// process has more work than CPU, ticks start late before anything else
// goes wrong. While the node is overloaded the server refuses new joins,
// rooms and spectators (503 / `overloaded`, close 1013) so that the
// players already in play keep their snapshots.
//
// A Detector is safe for concurrent use: every room goroutine reports to
// it, and request handlers ask it.
package overload

import (
	"sync"
	"sync/atomic"
	"time"
)

// Config sets a Detector. Zero fields take the defaults.
type Config struct {
	// Window is how long ticks are counted before the node is judged (1s).
	Window time.Duration
	// Late is how late, as a fraction of its period, a tick must start to
	// count as late (0.5), and MinLate how late at least (10ms: at high
	// tick rates, timer and scheduling jitter alone reach half a period).
	Late    float64
	MinLate time.Duration
	// Enter is the share of late ticks in a window that makes the node
	// overloaded (0.10); below Leave (0.02) for Hold it is fine again.
	Enter, Leave float64
	// Hold is how long the node stays overloaded at least, and the retry
	// hint given to those refused (5s).
	Hold time.Duration
	// OnChange, when set, is told when the node becomes overloaded and
	// when it recovers, with the share of late ticks of the window that
	// decided it (for a log line and metrics). It is called with no lock
	// held, on the goroutine of a tick.
	OnChange func(overloaded bool, lateShare float64)
	// Now is the clock (time.Now); tests set it.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = time.Second
	}
	if c.Late <= 0 {
		c.Late = 0.5
	}
	if c.MinLate <= 0 {
		c.MinLate = 10 * time.Millisecond
	}
	if c.Enter <= 0 {
		c.Enter = 0.10
	}
	if c.Leave <= 0 {
		c.Leave = 0.02
	}
	if c.Hold <= 0 {
		c.Hold = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Detector judges a node's load window by window.
type Detector struct {
	cfg  Config
	over atomic.Bool

	mu        sync.Mutex // guards the window and the state below
	start     time.Time  // of the current window
	ticks     int
	late      int
	overSince time.Time // when the node last became (or stayed) overloaded
}

// New returns a detector of a node that is not overloaded.
func New(cfg Config) *Detector {
	cfg = cfg.withDefaults()
	return &Detector{cfg: cfg, start: cfg.Now()}
}

// Tick records that a tick of the given period started late by late
// (skipped ticks count as late ones).
func (d *Detector) Tick(late, period time.Duration, skipped int) {
	isLate := skipped > 0 || late > max(time.Duration(d.cfg.Late*float64(period)), d.cfg.MinLate)
	d.mu.Lock()
	d.ticks += 1 + skipped
	if isLate {
		d.late += 1 + skipped
	}
	changed, over, share := d.judgeLocked(d.cfg.Now())
	d.mu.Unlock()
	if changed && d.cfg.OnChange != nil {
		d.cfg.OnChange(over, share)
	}
}

// judgeLocked closes the window once it has lasted Window and decides the
// state; it reports whether the state changed.
func (d *Detector) judgeLocked(now time.Time) (changed, over bool, share float64) {
	if now.Sub(d.start) < d.cfg.Window || d.ticks == 0 {
		return false, d.over.Load(), 0
	}
	share = float64(d.late) / float64(d.ticks)
	d.start, d.ticks, d.late = now, 0, 0
	was := d.over.Load()
	switch {
	case share >= d.cfg.Enter:
		d.overSince = now
		d.over.Store(true)
	case was && share < d.cfg.Leave && now.Sub(d.overSince) >= d.cfg.Hold:
		d.over.Store(false)
	case was && share >= d.cfg.Leave:
		d.overSince = now // still struggling: hold on
	}
	return d.over.Load() != was, d.over.Load(), share
}

// Overloaded reports whether the node is past its capacity now.
func (d *Detector) Overloaded() bool { return d.over.Load() }

// RetryAfter is the hint given to a client refused for overload.
func (d *Detector) RetryAfter() time.Duration { return d.cfg.Hold }
