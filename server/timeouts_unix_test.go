//go:build unix

package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestSlowReaderOfAShortAnswerIsCut: a client that reads the browser
// client's 70 KB script at 10 KB/s through small socket buffers is cut
// once the write timeout has passed, rather than holding the connection
// and the handler for as long as it likes.
func TestSlowReaderOfAShortAnswerIsCut(t *testing.T) {
	// Small socket buffers on both sides (a fixed size turns the kernel's
	// autotuning off), so that most of the answer waits for the reader.
	bufSize := func(opt int) func(_, _ string, rc syscall.RawConn) error {
		return func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	lc := net.ListenConfig{Control: bufSize(syscall.SO_SNDBUF)} // accepted sockets inherit it
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := shortTimeouts()
	_, addr := serveOn(t, cfg, ln)
	resp, err := http.Get("http://" + addr + "/tickwire.js")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /tickwire.js: %d %v", resp.StatusCode, err)
	}
	full := len(body)
	if full < 64<<10 {
		t.Skipf("tickwire.js is %d bytes, too small to fill the socket buffers", full)
	}
	d := net.Dialer{Control: bufSize(syscall.SO_RCVBUF)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /tickwire.js HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	br := bufio.NewReaderSize(c, 1024)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	began, got := time.Now(), 0
	buf := make([]byte, 1024)
	for {
		// The slow reader: 1 KiB every 100 ms.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.ReadFull(resp.Body, buf)
		got += n
		if err != nil {
			break
		}
		if time.Since(began) > 30*time.Second {
			t.Fatal("still reading after 30 s")
		}
		<-time.After(100 * time.Millisecond)
	}
	if got >= full {
		t.Fatalf("the slow reader got all %d bytes in %v; want a cut after the %v write timeout", got, time.Since(began), cfg.WriteTimeout)
	}
	t.Logf("slow reader cut after %d of %d bytes, %v", got, full, time.Since(began).Round(time.Millisecond))
}
