//go:build unix

package overload

import (
	"runtime"
	"syscall"
	"time"
)

// CPUUse reads, window by window, the share of the CPU available to the
// process that it used: its CPU time (getrusage, every thread) over the
// wall time times GOMAXPROCS, which Go sets from the CPUs the process may
// run on and its cgroup's CPU limit. It is not safe for concurrent use.
type CPUUse struct {
	lastCPU  time.Duration
	lastWall time.Time
}

// NewCPUUse returns a reader whose first window starts now.
func NewCPUUse() *CPUUse {
	c := &CPUUse{}
	c.Share()
	return c
}

// Share returns the share (0..1, a little more with rounding) of the
// available CPU used since the previous call; ok is false when it cannot
// be read or no time has passed.
func (c *CPUUse) Share() (share float64, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	wall := now.Sub(c.lastWall)
	used := cpu - c.lastCPU
	first := c.lastWall.IsZero()
	c.lastCPU, c.lastWall = cpu, now
	if first || wall <= 0 {
		return 0, false
	}
	return float64(used) / (float64(wall) * float64(runtime.GOMAXPROCS(0))), true
}
