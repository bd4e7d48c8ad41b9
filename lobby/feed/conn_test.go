package feed

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickwire/tickwire/internal/tlstest"
)

// Small socket buffers, so that a viewer that stops reading fills them
// with a few kilobytes (the kernel doubles these, with a floor of a few KB).
const (
	smallSendBuf = 4 << 10
	smallRecvBuf = 4 << 10
)

// smallBufListener gives its accepted connections small send buffers.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if b, ok := c.(interface{ SetWriteBuffer(int) error }); ok {
		_ = b.SetWriteBuffer(smallSendBuf)
	}
	return c, err
}

// serveFeeds serves h's SSE and long-poll handlers, over TLS when tlsConf
// is set, with small send buffers, until the test ends. It listens on
// loopback TCP, or with unix set on a Unix socket, whose small buffers do
// not slow a transfer down as TCP's do on loopback (where a receive window
// under the segment size stalls the sender for the persist timer). It
// returns the address, prefixed with "unix:" for a Unix socket.
func serveFeeds(t *testing.T, h *Handlers, tlsConf *tls.Config, unix bool) string {
	return serveFeedsBuf(t, h, tlsConf, unix, true)
}

// serveFeedsBuf is serveFeeds with the system's socket buffers unless small.
func serveFeedsBuf(t *testing.T, h *Handlers, tlsConf *tls.Config, unix, small bool) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms/{room}/events", h.SSE)
	mux.HandleFunc("GET /rooms/{room}/poll", h.Poll)
	network, address := "tcp", "127.0.0.1:0"
	if unix {
		network, address = "unix", t.TempDir()+"/feed.sock"
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	l := ln
	if small {
		l = smallBufListener{ln}
	}
	if tlsConf != nil {
		l = tls.NewListener(l, tlsConf)
	}
	hs := &http.Server{Handler: mux, ErrorLog: nil}
	go hs.Serve(l)
	t.Cleanup(func() {
		hs.Close()
		h.Shutdown()
	})
	if unix {
		return "unix:" + address
	}
	return ln.Addr().String()
}

// testTLS returns a server and a client TLS configuration for 127.0.0.1
// (HTTP/1.1 only: taken-over connections).
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	c := tlstest.New(t)
	server = &tls.Config{Certificates: []tls.Certificate{c.TLS()}, NextProtos: []string{"http/1.1"}}
	client = &tls.Config{RootCAs: c.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	return server, client
}

// rawClient is one HTTP/1.1 request on a connection of its own, with a
// small receive buffer, read by hand.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
}

// get sends GET path to addr (over TLS with tlsConf) and reads the
// response head, which must be a 200.
func get(t *testing.T, addr, path string, tlsConf *tls.Config, header ...string) *rawClient {
	t.Helper()
	c, err := getStatus(addr, path, tlsConf, header...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func getStatus(addr, path string, tlsConf *tls.Config, header ...string) (*rawClient, error) {
	c, err := send(addr, path, tlsConf, header...)
	if err != nil {
		return nil, err
	}
	status, _, err := c.head()
	switch {
	case err != nil:
	case !strings.HasPrefix(status, "HTTP/1.1 200 "):
		err = fmt.Errorf("GET %s: %q", path, status)
	default:
		return c, nil
	}
	c.Close()
	return nil, err
}

// send sends GET path to addr (over TLS with tlsConf), on a connection
// with a small receive buffer, and does not wait for the answer.
func send(addr, path string, tlsConf *tls.Config, header ...string) (*rawClient, error) {
	network := "tcp"
	if a, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", a
	}
	tc, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	if c, ok := tc.(*net.TCPConn); ok {
		_ = c.SetReadBuffer(smallRecvBuf)
	}
	var conn net.Conn = tc
	if tlsConf != nil {
		conn = tls.Client(tc, tlsConf)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		conn.Close()
		return nil, err
	}
	return &rawClient{conn: conn, r: bufio.NewReaderSize(conn, 1024)}, nil
}

// head reads the response's status line and headers (lower-case names).
func (c *rawClient) head() (status string, header map[string]string, err error) {
	status, err = c.r.ReadString('\n')
	if err != nil {
		return "", nil, err
	}
	header = make(map[string]string)
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		if line == "\r\n" {
			return strings.TrimSpace(status), header, nil
		}
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
}

func (c *rawClient) Close() { c.conn.Close() }

// sseBlock is one block of an SSE stream: an event, `retry:` or a
// `: ping` comment.
type sseBlock struct {
	kind string // "event", "retry" or "ping"
	id   uint64
	typ  string
	data string
}

// errPartial is a stream that ended within a block; errGarbled a block
// that is not well formed.
var (
	errPartial = errors.New("stream ended within a block")
	errGarbled = errors.New("garbled block")
)

// next reads the next block and checks that it is well formed: an event
// is exactly `id:`, `event:` and `data:` with a JSON object, in this order.
func (c *rawClient) next() (sseBlock, error) {
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if len(lines) > 0 || line != "" {
				return sseBlock{}, fmt.Errorf("%w (%q %q): %v", errPartial, lines, line, err)
			}
			return sseBlock{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		lines = append(lines, line)
	}
	switch {
	case len(lines) == 1 && lines[0] == ": ping":
		return sseBlock{kind: "ping"}, nil
	case len(lines) == 1 && strings.HasPrefix(lines[0], "retry: "):
		if _, err := strconv.Atoi(strings.TrimPrefix(lines[0], "retry: ")); err != nil {
			return sseBlock{}, fmt.Errorf("%w %q", errGarbled, lines)
		}
		return sseBlock{kind: "retry"}, nil
	case len(lines) == 3 && strings.HasPrefix(lines[0], "id: ") && strings.HasPrefix(lines[1], "event: ") &&
		strings.HasPrefix(lines[2], "data: {"):
		id, err := strconv.ParseUint(strings.TrimPrefix(lines[0], "id: "), 10, 64)
		data := strings.TrimPrefix(lines[2], "data: ")
		if err != nil || !json.Valid([]byte(data)) {
			return sseBlock{}, fmt.Errorf("%w %q", errGarbled, lines)
		}
		return sseBlock{kind: "event", id: id, typ: strings.TrimPrefix(lines[1], "event: "), data: data}, nil
	}
	return sseBlock{}, fmt.Errorf("%w %q", errGarbled, lines)
}

// chatLine returns the text of a chat event's data.
func chatLine(t *testing.T, data string) string {
	var m struct{ Text string }
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Errorf("chat data %s: %v", data, err)
	}
	return m.Text
}

// progress is a count that goroutines can wait on.
type progress struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func newProgress() *progress { return &progress{changed: make(chan struct{})} }

func (p *progress) set(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	close(p.changed)
	p.changed = make(chan struct{})
}

// wait blocks until the count reaches n or the timeout passes; it reports
// whether it was reached.
func (p *progress) wait(n int, timeout <-chan time.Time) bool {
	for {
		p.mu.Lock()
		at, changed := p.n, p.changed
		p.mu.Unlock()
		if at >= n {
			return true
		}
		select {
		case <-changed:
		case <-timeout:
			return false
		}
	}
}

// waitUntil polls cond until it holds, failing the test after a generous
// timeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// idleCount returns the SSE viewers and polls parked with f's pump.
func (h *Handlers) idleCount(f *Feed) (viewers, polls int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.idle[f]
	if s == nil {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.viewers), len(s.polls)
}
