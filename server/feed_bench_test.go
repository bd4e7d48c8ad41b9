package server

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/tickwire/tickwire/lobby"
)

// inUse is the memory the process holds in heap objects and stacks.
func inUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// openRaw opens n HTTP requests to path on raw TCP connections, reads up to
// the end of their response headers when wantHeaders is set, and returns
// the connections. Raw connections keep the client's own memory out of the
// measurement.
func openRaw(b *testing.B, addr, path string, n int, wantHeaders bool) []net.Conn {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
		if wantHeaders {
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
		}
		conns = append(conns, c)
	}
	return conns
}

// BenchmarkIdleViewerMemory opens 1,000 idle SSE streams and 1,000 parked
// long-polls (parked for over a second) on one room over loopback and
// reports the server's memory per viewer (heap and stacks, measured in the
// same process).
func BenchmarkIdleViewerMemory(b *testing.B) {
	const n = 1000
	for _, kind := range []string{"sse", "poll"} {
		b.Run(kind, func(b *testing.B) {
			s := New(testConfig(Config{PollTimeout: 55 * time.Second}))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			hs := &http.Server{Handler: s.Handler()}
			go hs.Serve(ln)
			defer hs.Close()
			r, err := s.Lobby().CreateRoom(lobby.RoomOptions{})
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the room's first, only snapshot
			f, _ := s.Lobby().Feed(r.ID())
			path := "/rooms/" + r.ID() + "/events"
			if kind == "poll" {
				path = fmt.Sprintf("/rooms/%s/poll?after=%d&timeout=55", r.ID(), f.Read(-1, false).Last)
			}
			var perViewer float64
			for i := 0; i < b.N; i++ {
				before := inUse()
				conns := openRaw(b, ln.Addr().String(), path, n, kind == "sse")
				for f.Viewers() < n {
					time.Sleep(10 * time.Millisecond)
				}
				if kind == "poll" {
					// Polls parked over a second are taken over from
					// net/http (see lobby/feed/poll.go).
					time.Sleep(1500 * time.Millisecond)
				}
				perViewer = float64(int64(inUse())-int64(before)) / n
				for _, c := range conns {
					c.Close()
				}
				for f.Viewers() > 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			b.ReportMetric(perViewer, "B/viewer")
			b.ReportMetric(0, "ns/op")
		})
	}
}
