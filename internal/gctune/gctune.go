// Package gctune keeps the garbage collector's share of the process's CPU
// near a target by moving GOGC between a floor and a ceiling.
//
// A WebSocket game server allocates little per frame, so a low GOGC (the
// floor) costs it no measurable CPU and keeps memory per player low. Other
// traffic allocates far more per message: Pion's WebRTC stack leaves about
// 4 KB of garbage per state frame it sends, and at GOGC 25 the collector
// then takes a quarter of the process's CPU. The collector's cost per
// cycle follows the live heap and its cycles follow the allocation rate
// over GOGC, so its share of the CPU falls about in proportion as GOGC
// rises. The tuner measures that share (runtime/metrics, refreshed at the
// end of each cycle) and scales GOGC by share/target, at most doubling or
// halving it per step, and leaves it alone within 30 % of the target.
// Memory rises only where collection is expensive; GOMEMLIMIT, when set,
// still bounds the heap.
package gctune

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config sets a tuner. Floor, Ceiling and Target must be positive.
type Config struct {
	Floor   int           // GOGC while the collector is cheap
	Ceiling int           // the highest GOGC the tuner sets
	Target  float64       // the collector's share of the busy CPU to aim at, 0..1
	Every   time.Duration // how often it looks (1 s when 0)
	Logger  *slog.Logger  // GOGC changes at debug level; nil: slog.Default()
}

// Run sets GOGC to the floor, then tunes it until ctx ends.
func Run(ctx context.Context, cfg Config) {
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	percent := cfg.Floor
	debug.SetGCPercent(percent)
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	last := readCPU()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := readCPU()
		if now.cycles == last.cycles {
			continue // the figures change only when a cycle ends
		}
		busy := now.busy() - last.busy()
		if busy <= 0 {
			continue
		}
		share := (now.gc - last.gc) / busy
		last = now
		next := Next(percent, share, cfg.Target, cfg.Floor, cfg.Ceiling)
		if next != percent {
			cfg.Logger.Debug("gc percent", "from", percent, "to", next, "gc_cpu_share", math.Round(share*1000)/1000)
			percent = next
			debug.SetGCPercent(percent)
		}
	}
}

// Next is the tuner's step: the GOGC that should bring the collector's
// share of the CPU from share to target, moving at most a factor of two
// from current, kept within [floor, ceiling], and current itself while
// share is within 30 % of target.
func Next(current int, share, target float64, floor, ceiling int) int {
	if share >= 0.7*target && share <= 1.3*target {
		return max(floor, min(ceiling, current))
	}
	factor := max(0.5, min(2, share/target))
	next := int(math.Round(float64(current) * factor))
	return max(floor, min(ceiling, next))
}

// cpuTimes are the runtime's CPU estimates, as of the end of the newest
// collection cycle.
type cpuTimes struct {
	cycles          uint64
	gc, total, idle float64
}

func (c cpuTimes) busy() float64 { return c.total - c.idle }

var cpuMetrics = []string{
	"/gc/cycles/total:gc-cycles",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/total:cpu-seconds",
	"/cpu/classes/idle:cpu-seconds",
}

func readCPU() cpuTimes {
	s := make([]metrics.Sample, len(cpuMetrics))
	for i, name := range cpuMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	return cpuTimes{cycles: s[0].Value.Uint64(), gc: s[1].Value.Float64(),
		total: s[2].Value.Float64(), idle: s[3].Value.Float64()}
}
