package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tickHistogram is the server's histogram of tick durations on /metrics.
const tickHistogram = "tickwire_tick_duration_seconds"

// MetricsProbe measures tick durations from the difference of the
// server's /metrics tick histogram between Begin and End. Its percentiles
// are interpolated inside the histogram's buckets, so they are only as
// fine as the buckets (x2.5 apart).
type MetricsProbe struct {
	URL   string // server base URL
	begin []bucket
	err   error
}

type bucket struct {
	le    float64 // upper bound, seconds
	count float64 // cumulative
}

// Begin records the histogram at the start of the window.
func (p *MetricsProbe) Begin([]string) { p.begin, p.err = scrapeHistogram(p.URL, tickHistogram) }

// End returns the tick durations observed since Begin, in ms.
func (p *MetricsProbe) End() (Dist, string, bool) {
	end, err := scrapeHistogram(p.URL, tickHistogram)
	if p.err != nil || err != nil || len(end) != len(p.begin) {
		return Dist{}, "", false
	}
	delta := make([]bucket, len(end))
	for i := range end {
		delta[i] = bucket{le: end[i].le, count: end[i].count - p.begin[i].count}
	}
	total := delta[len(delta)-1].count
	if total <= 0 {
		return Dist{}, "", false
	}
	q := func(f float64) float64 { return round3(1000 * histQuantile(delta, f)) }
	// The largest observation is known only to its bucket.
	maxLe := 0.0
	for i, b := range delta {
		if b.count > 0 && (i == 0 || b.count > delta[i-1].count) {
			maxLe = b.le
			if math.IsInf(b.le, 1) && i > 0 {
				maxLe = delta[i-1].le // above the largest bound: shown as that bound
			}
		}
	}
	return Dist{N: int(total), P50: q(0.5), P99: q(0.99), Max: round3(1000 * maxLe)},
		"/metrics " + tickHistogram + " (interpolated in its buckets)", true
}

// histQuantile interpolates quantile f of cumulative buckets, as
// Prometheus's histogram_quantile does.
func histQuantile(bs []bucket, f float64) float64 {
	total := bs[len(bs)-1].count
	rank := f * total
	i := slices.IndexFunc(bs, func(b bucket) bool { return b.count >= rank })
	if i < 0 {
		return NaN
	}
	if math.IsInf(bs[i].le, 1) {
		if i == 0 {
			return NaN
		}
		return bs[i-1].le
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = bs[i-1].le, bs[i-1].count
	}
	in := bs[i].count - below
	if in <= 0 {
		return bs[i].le
	}
	return lo + (bs[i].le-lo)*(rank-below)/in
}

// scrapeHistogram reads the cumulative buckets of histogram name from the
// server's /metrics, sorted by bound.
func scrapeHistogram(server, name string) ([]bucket, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: HTTP %d", resp.StatusCode)
	}
	var bs []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		b := bucket{}
		if b.le, err = strconv.ParseFloat(le, 64); err != nil {
			continue
		}
		if b.count, err = strconv.ParseFloat(strings.Fields(count)[0], 64); err != nil {
			continue
		}
		bs = append(bs, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("/metrics has no %s", name)
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return bs, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
