package overload

import (
	"math"
	"runtime/metrics"
	"time"
)

// minSched is the fewest scheduling events a window needs for its
// percentile to count (the runtime samples them, a few hundred a second
// on a busy node).
const minSched = 100

// SchedLatency reads the runtime's histogram of how long goroutines
// waited, runnable, before they ran (/sched/latencies:seconds), window by
// window. It is not safe for concurrent use.
type SchedLatency struct {
	sample []metrics.Sample
	last   []uint64 // the counts at the previous read
	delta  []uint64
}

// NewSchedLatency returns a reader whose first window starts now.
func NewSchedLatency() *SchedLatency {
	s := &SchedLatency{sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
	s.Quantile(0.99)
	return s
}

// P99 is Quantile(0.99), with ok false when the window saw too few events
// to tell.
func (s *SchedLatency) P99() (time.Duration, bool) {
	q, n := s.Quantile(0.99)
	return q, n >= minSched
}

// Quantile returns the q-quantile of the latencies since the previous
// read (the upper bound of its bucket) and how many were seen.
func (s *SchedLatency) Quantile(q float64) (latency time.Duration, n uint64) {
	metrics.Read(s.sample)
	h := s.sample[0].Value.Float64Histogram()
	if len(s.last) != len(h.Counts) {
		s.last = make([]uint64, len(h.Counts))
		s.delta = make([]uint64, len(h.Counts))
	}
	for i, c := range h.Counts {
		s.delta[i] = c - s.last[i]
		n += s.delta[i]
	}
	copy(s.last, h.Counts)
	if n == 0 {
		return 0, 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range s.delta {
		if seen += c; seen >= want {
			up := h.Buckets[i+1]
			if math.IsInf(up, 1) {
				up = h.Buckets[i]
			}
			return time.Duration(up * float64(time.Second)), n
		}
	}
	return 0, n
}
