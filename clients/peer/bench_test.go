package peer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkConnectPairs connects 50 pairs of peers at once through one
// signaling server, each pair in its own call, and reports the time from
// the first join of a pair until both of its DataChannel ends are open.
func BenchmarkConnectPairs(b *testing.B) {
	const pairs = 50
	srv := startServer(b)
	var times []time.Duration
	for i := 0; b.Loop(); i++ {
		var (
			mu    sync.Mutex // guards peers and times
			peers []*Peer
			wg    sync.WaitGroup
		)
		for j := range pairs {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				call := fmt.Sprintf("bench-%d-%d", i, j)
				start := time.Now()
				var pair []*Peer
				for _, name := range []string{"a", "b"} {
					p, err := Join(ctx, Config{Server: srv, Call: call, Name: name})
					if err != nil {
						b.Error(err)
						break
					}
					pair = append(pair, p)
				}
				for _, p := range pair {
					if err := p.WaitOpen(ctx, 1); err != nil {
						b.Error(err)
					}
				}
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				peers = append(peers, pair...)
				times = append(times, d)
			})
		}
		wg.Wait()
		b.StopTimer()
		for _, p := range peers {
			_ = p.Close()
		}
		b.StartTimer()
	}
	slices.Sort(times)
	b.ReportMetric(float64(percentile(times, 50))/1e6, "p50-ms")
	b.ReportMetric(float64(percentile(times, 99))/1e6, "p99-ms")
}

// percentile returns the p-th percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}
