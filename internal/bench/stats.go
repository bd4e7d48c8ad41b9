package bench

import (
	"math"
	"slices"
	"time"
)

// Dist summarizes a distribution of samples in milliseconds.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// samples is a growable set of measurements in milliseconds. It is not safe
// for concurrent use: each goroutine keeps its own and they are merged at
// the end.
type samples []float32

func (s *samples) add(ms float64) { *s = append(*s, float32(ms)) }

func (s *samples) addDur(d time.Duration) { s.add(float64(d) / 1e6) }

// merge joins sample sets into one.
func merge(sets ...samples) samples {
	n := 0
	for _, s := range sets {
		n += len(s)
	}
	out := make(samples, 0, n)
	for _, s := range sets {
		out = append(out, s...)
	}
	return out
}

// dist sorts s and returns its summary (nearest-rank percentiles).
func (s samples) dist() Dist {
	if len(s) == 0 {
		return Dist{}
	}
	slices.Sort(s)
	return Dist{N: len(s), P50: round3(float64(rank(s, 50))), P99: round3(float64(rank(s, 99))), Max: round3(float64(s[len(s)-1]))}
}

// rank returns the p-th percentile of sorted s by nearest rank.
func rank(sorted samples, p float64) float32 {
	i := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Median returns the median of vs (the mean of the middle two for an even
// count), or 0 for none.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MedianDist returns the field-wise median of several runs' distributions.
func MedianDist(ds []Dist) Dist {
	pick := func(f func(Dist) float64) float64 {
		vs := make([]float64, len(ds))
		for i, d := range ds {
			vs[i] = f(d)
		}
		return Median(vs)
	}
	return Dist{
		N:   int(pick(func(d Dist) float64 { return float64(d.N) })),
		P50: pick(func(d Dist) float64 { return d.P50 }),
		P99: pick(func(d Dist) float64 { return d.P99 }),
		Max: pick(func(d Dist) float64 { return d.Max }),
	}
}
