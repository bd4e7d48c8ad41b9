package bench

import (
	"os"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/natstest"
	"github.com/tickwire/tickwire/server"
)

// startCluster runs n in-process nodes joined by an embedded NATS server.
func startCluster(tb testing.TB, n int) []*InProcess {
	tb.Helper()
	url := natstest.Start(tb)
	nodes := make([]*InProcess, n)
	for i := range nodes {
		p, err := StartInProcess(server.Config{NATS: url, DirectoryEvery: 100 * time.Millisecond, NoOverload: true})
		if err != nil {
			tb.Fatal(err)
		}
		p.PID = os.Getpid()
		tb.Cleanup(func() { _ = p.Close() })
		nodes[i] = p
	}
	return nodes
}

// Viewers on other nodes of a cluster get the rooms' events, chat lines
// all there.
func TestFeedsAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	for _, kind := range []string{spectator.SSE, spectator.Poll} {
		res, err := RunFeeds(testCtx(t), nodes[0].Target, FeedsConfig{
			Transport: kind, Viewers: 6, Rooms: 2, BotsPerRoom: 2, ChatEvery: 150 * time.Millisecond,
			Duration: time.Second, Settle: 300 * time.Millisecond,
			ViewerServers: []string{nodes[1].URL, nodes[2].URL},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.LatencySnap.N == 0 || res.LatencyChat.N == 0 {
			t.Errorf("%s: snap latency %+v, chat %+v", kind, res.LatencySnap, res.LatencyChat)
		}
		if res.ChatsLost != 0 {
			t.Errorf("%s: %d chat lines missed", kind, res.ChatsLost)
		}
	}
}

// BenchmarkFeedsAcrossNodes measures the delivery latency of SSE viewers
// of rooms hosted by one node of three (NATS embedded, everything in this
// process): all viewers on the hosting node, then spread over the three.
//
//	go test -run '^$' -bench FeedsAcrossNodes -benchtime 1x -count 3 ./internal/bench
func BenchmarkFeedsAcrossNodes(b *testing.B) {
	nodes := startCluster(b, 3)
	all := []string{nodes[0].URL, nodes[1].URL, nodes[2].URL}
	for i := 0; i < b.N; i++ {
		var p50, p99 [2]float64
		for j, servers := range [][]string{nil, all} {
			res, err := RunFeeds(b.Context(), nodes[0].Target, FeedsConfig{
				Viewers: 600, Rooms: 4, BotsPerRoom: 8, Duration: 5 * time.Second, Warmup: time.Second,
				ViewerServers: servers,
			})
			if err != nil {
				b.Fatal(err)
			}
			if res.ChatsLost != 0 {
				b.Fatalf("%d chat lines missed", res.ChatsLost)
			}
			p50[j], p99[j] = res.Latency.P50, res.Latency.P99
		}
		b.ReportMetric(p50[0], "p50-ms-1node")
		b.ReportMetric(p99[0], "p99-ms-1node")
		b.ReportMetric(p50[1], "p50-ms-3nodes")
		b.ReportMetric(p99[1], "p99-ms-3nodes")
		b.ReportMetric(p99[1]/p99[0], "p99-ratio")
	}
	b.ReportMetric(0, "ns/op")
}
