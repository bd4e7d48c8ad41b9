// Package overload tells when a node is past its capacity, from how late
// its rooms' ticks start and how long its goroutines wait to run. While
// the node is overloaded the server refuses new joins, rooms and
// spectators (503 / `overloaded`, close 1013) so that the players already
// in play keep their snapshots.
//
// A room ticks on a fixed schedule, so late ticks are a sure sign of more
// work than CPU, but a late one: Go's scheduler runs a goroutine woken by
// its timer next, ahead of those woken by the network, so rooms keep
// their ticks on time while connections' readers and new requests queue.
// On a server pinned to one core, at 100 Hz, ticks were still on time
// while requests waited for half a second, and when ticks did run late
// the node was 20 % past capacity: requests then waited tens of seconds
// (joins timed out instead of being refused, and inputs lagged). The
// runtime's scheduling latencies (/sched/latencies:seconds) show the queue
// once it builds: a window whose 99th percentile is over SchedLimit counts
// as overloaded too. Both come late when players pour in (100 joins a
// second add 7 % of a core a second there), and a node pushed past its
// capacity stays past it, since refusing newcomers sheds no load. So the
// node is also overloaded while it uses more than CPULimit of the CPU
// available to it: the margin left absorbs the joins that arrive while it
// judges.
//
// A Detector is safe for concurrent use: every room goroutine reports to
// it, and request handlers ask it.
package overload

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSchedLimit is Config.SchedLimit's default: goroutines that wait
// longer than this to run (p99) mean a machine too busy for its rooms.
const DefaultSchedLimit = 20 * time.Millisecond

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
	// SchedLimit: a window in which goroutines waited longer than this to
	// run once runnable, at the 99th percentile, makes the node overloaded
	// (20ms); under half of it, and with few late ticks, it is fine again.
	SchedLimit time.Duration
	// Sched returns the 99th percentile of the scheduling latencies since
	// its previous call, and false when too few were seen to tell (nil:
	// the runtime's, see SchedLatency).
	Sched func() (time.Duration, bool)
	// CPULimit: a window in which the process used more than this share
	// of the CPU available to it makes the node overloaded (0.9); 5 points
	// under it, it is fine again. Negative: CPU use is not a signal.
	CPULimit float64
	// CPU returns the share of the available CPU used since its previous
	// call, and false when it cannot tell (nil: the process's, see CPUUse).
	CPU func() (float64, bool)
	// OnChange, when set, is told when the node becomes overloaded and
	// when it recovers, with the window that decided it (for a log line
	// and metrics). It is called with no lock held, on the goroutine of a
	// tick or of a caller of Overloaded.
	OnChange func(overloaded bool, w Window)
	// Now is the clock (time.Now); tests set it.
	Now func() time.Time
}

// Window is what the detector saw in one window.
type Window struct {
	LateShare float64       // share of the ticks that started late
	SchedP99  time.Duration // 99th percentile of the scheduling latencies (0: too few to tell)
	CPU       float64       // share of the available CPU used (0: not known)
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
	if c.SchedLimit <= 0 {
		c.SchedLimit = DefaultSchedLimit
	}
	if c.Sched == nil {
		c.Sched = NewSchedLatency().P99
	}
	if c.CPULimit == 0 {
		c.CPULimit = 0.9
	}
	if c.CPU == nil {
		c.CPU = NewCPUUse().Share
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
	changed, over, w := d.judgeLocked(d.cfg.Now())
	d.mu.Unlock()
	if changed && d.cfg.OnChange != nil {
		d.cfg.OnChange(over, w)
	}
}

// judgeLocked closes the window once it has lasted Window and decides the
// state; it reports whether the state changed. A window without ticks
// (every room gone) is judged on the other signals.
func (d *Detector) judgeLocked(now time.Time) (changed, over bool, w Window) {
	if now.Sub(d.start) < d.cfg.Window {
		return false, d.over.Load(), w
	}
	if d.ticks > 0 {
		w.LateShare = float64(d.late) / float64(d.ticks)
	}
	if sched, ok := d.cfg.Sched(); ok {
		w.SchedP99 = sched
	}
	if cpu, ok := d.cfg.CPU(); ok {
		w.CPU = cpu
	}
	cpuOver := d.cfg.CPULimit > 0 && w.CPU >= d.cfg.CPULimit
	cpuHigh := d.cfg.CPULimit > 0 && w.CPU >= d.cfg.CPULimit-0.05
	d.start, d.ticks, d.late = now, 0, 0
	was := d.over.Load()
	switch {
	case w.LateShare >= d.cfg.Enter || w.SchedP99 >= d.cfg.SchedLimit || cpuOver:
		d.overSince = now
		d.over.Store(true)
	case was && (w.LateShare >= d.cfg.Leave || w.SchedP99 >= d.cfg.SchedLimit/2 || cpuHigh):
		d.overSince = now // still struggling: hold on
	case was && now.Sub(d.overSince) >= d.cfg.Hold:
		d.over.Store(false)
	}
	return d.over.Load() != was, d.over.Load(), w
}

// Overloaded reports whether the node is past its capacity now. While it
// is, a call judges the window that has lasted its time, as a tick would:
// a node whose rooms all ended while it was overloaded has no tick left to
// tell it has recovered, and refusing every new room would keep it so.
func (d *Detector) Overloaded() bool {
	if !d.over.Load() {
		return false
	}
	d.mu.Lock()
	changed, over, w := d.judgeLocked(d.cfg.Now())
	d.mu.Unlock()
	if changed && d.cfg.OnChange != nil {
		d.cfg.OnChange(over, w)
	}
	return over
}

// RetryAfter is the hint given to a client refused for overload.
func (d *Detector) RetryAfter() time.Duration { return d.cfg.Hold }
