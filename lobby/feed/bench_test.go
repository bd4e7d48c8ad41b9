package feed

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickwire/tickwire/wire"
)

// BenchmarkPublishChat is the cost of publishing one chat line: its
// encoding and its place in the history (the oldest ones evicted).
func BenchmarkPublishChat(b *testing.B) {
	f := New(Config{}, nil)
	opened(f)
	m := &wire.ChatLine{ID: 1, Name: "ana", Text: strings.Repeat("hello ", 20), ST: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Chat(m)
	}
}

// BenchmarkPollBody is the cost of one long-poll answer of 10 chat lines and
// a snapshot.
func BenchmarkPollBody(b *testing.B) {
	f := New(Config{}, nil)
	opened(f)
	snap(f, 1)
	cursor := f.Read(-1, Coalesce).Last
	for i := 0; i < 10; i++ {
		chat(f, strings.Repeat("x", 100))
	}
	batch := f.Read(int64(cursor), Coalesce)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = pollBody(batch)
	}
}

// BenchmarkSSEFanout is the cost of one chat line reaching 100 idle SSE
// viewers on loopback, pump and sockets included (ns/op per event).
func BenchmarkSSEFanout(b *testing.B) {
	const viewers = 100
	f := New(Config{}, nil)
	opened(f)
	snap(f, 1)
	h := NewHandlers(HandlerConfig{Lookup: func(string) (*Feed, error) { return f, nil }, Heartbeat: time.Hour})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms/{room}/events", h.SSE)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	defer func() { hs.Close(); h.Shutdown() }()
	var seen atomic.Int64 // chat events read, over all viewers
	notify := make(chan struct{}, 1)
	ready := make(chan struct{}, viewers)
	var wg sync.WaitGroup
	conns := make([]net.Conn, viewers)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		fmt.Fprintf(c, "GET /rooms/r/events HTTP/1.1\r\nHost: x\r\n\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReaderSize(c, 64<<10)
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				switch {
				case bytes.Equal(line, []byte("event: chat\n")):
					seen.Add(1)
					select {
					case notify <- struct{}{}:
					default:
					}
				case bytes.Equal(line, []byte("event: snap\n")):
					ready <- struct{}{}
				}
			}
		}()
	}
	for range viewers {
		<-ready
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		chat(f, "hello")
		for want := int64(i+1) * viewers; seen.Load() < want; {
			<-notify
		}
	}
	b.StopTimer()
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
}
