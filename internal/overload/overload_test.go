package overload

import (
	"testing"
	"time"
)

// clock is a hand-moved clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// feed reports ticks rooms run in one window: n of them, late of which
// started late.
func feed(d *Detector, c *clock, n, late int) {
	const period = 50 * time.Millisecond
	for i := range n {
		lateBy := time.Millisecond
		if i < late {
			lateBy = 40 * time.Millisecond
		}
		d.Tick(lateBy, period, 0)
	}
	c.t = c.t.Add(time.Second)
	d.Tick(0, period, 0) // closes the window
}

func TestDetectorEntersHoldsAndLeaves(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var changes []bool
	d := New(Config{Now: c.now, OnChange: func(over bool, _ float64) { changes = append(changes, over) }})
	feed(d, c, 1000, 50) // 5 % late: fine
	if d.Overloaded() {
		t.Fatal("overloaded at 5 % late ticks")
	}
	feed(d, c, 1000, 150) // 15 %: overloaded
	if !d.Overloaded() {
		t.Fatal("not overloaded at 15 % late ticks")
	}
	for range 3 { // fine again, but held for 5 s
		feed(d, c, 1000, 0)
		if !d.Overloaded() {
			t.Fatal("recovered before the hold")
		}
	}
	feed(d, c, 1000, 0)
	feed(d, c, 1000, 0)
	if d.Overloaded() {
		t.Fatal("still overloaded after 5 quiet seconds")
	}
	if len(changes) != 2 || !changes[0] || changes[1] {
		t.Fatalf("changes told %v, want [true false]", changes)
	}
	if d.RetryAfter() != 5*time.Second {
		t.Fatalf("retry hint %v", d.RetryAfter())
	}
}

func TestSkippedTicksCountAsLate(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now})
	for range 100 {
		d.Tick(time.Millisecond, 50*time.Millisecond, 0)
	}
	d.Tick(0, 50*time.Millisecond, 20) // a stall skipped 20 ticks
	c.t = c.t.Add(time.Second)
	d.Tick(0, 50*time.Millisecond, 0)
	if !d.Overloaded() {
		t.Fatal("skipped ticks did not count")
	}
}

// At a high tick rate half a period is within the jitter of timers: a tick
// counts as late only past MinLate.
func TestLateHasAFloor(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	d := New(Config{Now: c.now})
	for range 100 {
		d.Tick(8*time.Millisecond, 10*time.Millisecond, 0) // 0.8 periods at 100 Hz, under 10 ms
	}
	c.t = c.t.Add(time.Second)
	d.Tick(0, 10*time.Millisecond, 0)
	if d.Overloaded() {
		t.Fatal("8 ms of timer jitter at 100 Hz counted as overload")
	}
}
