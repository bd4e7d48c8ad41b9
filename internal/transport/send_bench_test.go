package transport

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// syscalls returns this process's read and write system calls so far
// (/proc/self/io), or ok false where that file is missing.
func syscalls() (reads, writes int64, ok bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, true
}

// loopbackConn upgrades one loopback WebSocket and returns the server's
// Conn and the client's socket.
func loopbackConn(b *testing.B) (*Conn, *websocket.Conn) {
	b.Helper()
	conns := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, Config{})
		if err != nil {
			b.Error(err)
			return
		}
		conns <- c
	}))
	b.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ws.Close() })
	return <-conns, ws
}

// BenchmarkSendState hands one snapshot frame (the size of a full room's)
// to a connection and waits until its writer has written it, as each tick
// does for each player. It reports the write system calls per frame (the
// whole process's, from /proc/self/io; the client side only reads) and the
// allocations per frame.
func BenchmarkSendState(b *testing.B) {
	c, ws := loopbackConn(b)
	go func() { // the client reads and drops everything
		for {
			_, r, err := ws.NextReader()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, r)
		}
	}()
	shared := make([]byte, 560)
	tail := []byte{0x4d}
	b.ReportAllocs()
	_, w0, ok := syscalls()
	want := c.Stats().FramesOut
	n := 0
	for b.Loop() {
		c.SendState(shared, tail)
		want++
		for c.Stats().FramesOut < want {
			runtime.Gosched()
		}
		n++
	}
	if _, w1, _ := syscalls(); ok && n > 0 {
		b.ReportMetric(float64(w1-w0)/float64(n), "writes/frame")
	}
}

// BenchmarkReadInput reads input frames the client sends, as a player's
// session does for every input, and reports read system calls per frame.
func BenchmarkReadInput(b *testing.B) {
	c, ws := loopbackConn(b)
	// A 35-byte input frame, masked by the client as browsers do.
	frame := make([]byte, 35)
	var stop atomic.Bool
	sent := make(chan struct{}, 1024)
	go func() {
		for range sent {
			if stop.Load() || ws.WriteMessage(websocket.BinaryMessage, frame) != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	r0, _, ok := syscalls()
	n := 0
	for b.Loop() {
		sent <- struct{}{}
		if _, err := c.Read(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	stop.Store(true)
	close(sent)
	if r1, _, _ := syscalls(); ok && n > 0 {
		b.ReportMetric(float64(r1-r0)/float64(n), "reads/frame")
	}
	_ = time.Second
}
