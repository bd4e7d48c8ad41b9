package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/wire"
)

// feedSmallBufListener gives accepted TCP connections small send buffers,
// so that a viewer that stops reading fills its socket with a few KB.
type feedSmallBufListener struct{ net.Listener }

func (l feedSmallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// tlsServer is a server run by Serve with a certificate, as with
// -tls-cert, on a listener whose sockets have small send buffers (small
// is set) or the system's; its players connect to the same handler over
// plain HTTP (ts.http), its viewers over TLS at addr.
type tlsServer struct {
	*testServer
	addr string      // host:port of the TLS listener
	tls  *tls.Config // a client configuration trusting the certificate (HTTP/1.1 and h2)
}

func startTLS(t *testing.T, cfg Config, small bool) *tlsServer {
	t.Helper()
	cert, key := selfSigned(t, t.TempDir())
	cfg.Addr, cfg.TLSCert, cfg.TLSKey, cfg.Drain = "127.0.0.1:0", cert, key, 10*time.Millisecond
	s := New(testConfig(cfg))
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = ln
	if small {
		l = feedSmallBufListener{ln}
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	hs := httptest.NewUnstartedServer(s.Handler())
	s.configureHTTP(hs.Config) // the timeouts of Serve
	hs.Start()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		hs.Close()
	})
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	return &tlsServer{
		testServer: &testServer{Server: s, http: hs, ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/play"},
		addr:       ln.Addr().String(),
		tls:        &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
	}
}

// sseReader reads an SSE stream and checks that every block is well
// formed; a stream that ends within a block is reported as such.
type sseReader struct {
	r    *bufio.Reader
	last int64 // id of the last event; -1 before the first
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 1024), last: -1}
}

var errGarbledSSE = errors.New("garbled SSE block")

type sseEvent struct {
	kind, typ, data string
	id              uint64
}

func (s *sseReader) next() (sseEvent, error) {
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if len(lines) > 0 || line != "" {
				return sseEvent{}, fmt.Errorf("stream ended within a block (%d lines): %w", len(lines), err)
			}
			return sseEvent{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		lines = append(lines, line)
	}
	switch {
	case len(lines) == 1 && (lines[0] == ": ping" || strings.HasPrefix(lines[0], "retry: ")):
		return sseEvent{kind: lines[0][:6]}, nil
	case len(lines) == 3 && strings.HasPrefix(lines[0], "id: ") && strings.HasPrefix(lines[1], "event: ") &&
		strings.HasPrefix(lines[2], "data: {"):
		id, err := strconv.ParseUint(strings.TrimPrefix(lines[0], "id: "), 10, 64)
		data := strings.TrimPrefix(lines[2], "data: ")
		if err != nil || !json.Valid([]byte(data)) || int64(id) <= s.last {
			break
		}
		s.last = int64(id)
		return sseEvent{kind: "event", id: id, typ: strings.TrimPrefix(lines[1], "event: "), data: data}, nil
	}
	return sseEvent{}, fmt.Errorf("%w after id %d: %.200q", errGarbledSSE, s.last, lines)
}

// untilChat reads events until a chat line with the given text, and
// returns the texts of the chat lines before it.
func (s *sseReader) untilChat(t *testing.T, text string) []string {
	t.Helper()
	var texts []string
	for {
		e, err := s.next()
		if err != nil {
			t.Fatalf("after %d chat lines: %v", len(texts), err)
		}
		if e.typ != wire.EventChat {
			continue
		}
		var c wire.ChatLine
		_ = json.Unmarshal([]byte(e.data), &c)
		if c.Text == text {
			return texts
		}
		texts = append(texts, c.Text)
	}
}

// chatBurst has p send n chat lines of 280 characters that JSON escapes
// to about 1.7 KB each, and waits for the room to send them back: by then
// the feed has published them.
func chatBurst(t *testing.T, p *player.Client, n int) []string {
	t.Helper()
	var sent []string
	for i := range n {
		text := fmt.Sprintf("%04d%s", i, strings.Repeat("<", wire.MaxChatLen-4))
		if err := p.Chat(text); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, text)
	}
	for range n {
		next[*wire.ChatLine](t, p)
	}
	return sent
}

// quietTicks has p send a few chat lines, one at a time, each after the
// room has sent the previous one back: a few room ticks during which a
// viewer that does not read stays stalled.
func quietTicks(t *testing.T, p *player.Client) []string {
	t.Helper()
	var sent []string
	for i := range 3 {
		text := fmt.Sprint("tick ", i)
		if err := p.Chat(text); err != nil {
			t.Fatal(err)
		}
		next[*wire.ChatLine](t, p)
		sent = append(sent, text)
	}
	return sent
}

// TestFeedSlowViewersOverTLS: viewers over TLS, HTTP/1.1 (a connection
// taken over from net/http: a *tls.Conn) and HTTP/2, stop reading while
// far more than their socket or flow-control window holds is published,
// stay stalled for a few room ticks, then read on: each gets every event,
// well formed, and stays connected.
func TestFeedSlowViewersOverTLS(t *testing.T) {
	const lines = 200 // about 340 KB
	cfg := Config{PingEvery: time.Hour, ChatRate: 1000, ChatBurst: 1000, MessageRate: 10000}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			ts := startTLS(t, cfg, true)
			p := ts.join(t, "ana", "auto")
			room := p.Welcome().Room
			var body io.ReadCloser
			if proto == "HTTP/1.1" {
				c, err := tls.Dial("tcp", ts.addr, ts.tls)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "GET /rooms/%s/events HTTP/1.1\r\nHost: %s\r\n\r\n", room, ts.addr)
				resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
				if err != nil {
					t.Fatal(err)
				}
				body = struct {
					io.Reader
					io.Closer
				}{resp.Body, c}
			} else {
				var protos http.Protocols
				protos.SetHTTP2(true)
				client := &http.Client{Transport: &http.Transport{TLSClientConfig: ts.tls, Protocols: &protos,
					HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10, MaxReceiveBufferPerConnection: 64 << 10}}}
				resp, err := client.Get("https://" + ts.addr + "/rooms/" + room + "/events")
				if err != nil {
					t.Fatal(err)
				}
				if resp.Proto != proto {
					t.Fatalf("served over %s", resp.Proto)
				}
				body = resp.Body
			}
			defer body.Close()
			s := newSSEReader(body)
			for e := (sseEvent{}); e.typ != wire.EventSnap; {
				var err error
				if e, err = s.next(); err != nil {
					t.Fatal(err)
				}
			}
			// The viewer stops reading.
			want := chatBurst(t, p, lines)
			want = append(want, quietTicks(t, p)...)
			if err := p.Chat("end"); err != nil {
				t.Fatal(err)
			}
			got := s.untilChat(t, "end")
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %d chat lines, want %d", len(got), len(want))
			}
			if n := ts.Lobby().List()[0].Spectators; n != 1 {
				t.Fatalf("%d spectators, want 1", n)
			}
		})
	}
}

// h2Client is a bare HTTP/2 client: it opens streams and counts those
// that received an SSE stream's first snapshot, keeping nothing else, so
// that a test measures the server's memory per stream, not a client's.
type h2Client struct {
	conn  *tls.Conn
	mu    sync.Mutex // guards writes to conn
	next  uint32     // id of the next stream
	ready chan error // a stream got its first snap (nil), or the connection failed
}

func dialH2(t *testing.T, addr string, conf *tls.Config) *h2Client {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q", p)
	}
	h := &h2Client{conn: c, next: 1, ready: make(chan error, 1024)}
	settings := binary.BigEndian.AppendUint16(nil, 0x4) // SETTINGS_INITIAL_WINDOW_SIZE
	settings = binary.BigEndian.AppendUint32(settings, 1<<20)
	h.write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	h.frame(0x4, 0, 0, settings)
	h.frame(0x8, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<30)) // WINDOW_UPDATE of the connection
	go h.read()
	return h
}

func (h *h2Client) write(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, _ = h.conn.Write(p)
}

func (h *h2Client) frame(typ, flags byte, stream uint32, payload []byte) {
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], stream)
	h.write(append(b, payload...))
}

// get opens a stream for GET path (HPACK: indexed :method GET and :scheme
// https, literal :path and :authority).
func (h *h2Client) get(authority, path string) {
	block := []byte{0x82, 0x87, 0x04, byte(len(path))}
	block = append(block, path...)
	block = append(block, 0x01, byte(len(authority)))
	block = append(block, authority...)
	h.frame(0x1, 0x1|0x4, h.next, block) // HEADERS, END_STREAM | END_HEADERS
	h.next += 2
}

func (h *h2Client) read() {
	r := bufio.NewReader(h.conn)
	pending := make(map[uint32][]byte) // data of streams yet to get their snap
	done := make(map[uint32]bool)
	head := make([]byte, 9)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			h.ready <- err
			return
		}
		payload := make([]byte, int(head[0])<<16|int(head[1])<<8|int(head[2]))
		if _, err := io.ReadFull(r, payload); err != nil {
			h.ready <- err
			return
		}
		typ, flags, stream := head[3], head[4], binary.BigEndian.Uint32(head[5:])&(1<<31-1)
		switch {
		case typ == 0x0 && !done[stream]: // DATA
			pending[stream] = append(pending[stream], payload...)
			if bytes.Contains(pending[stream], []byte("event: snap\n")) {
				delete(pending, stream)
				done[stream] = true
				h.ready <- nil
			}
		case typ == 0x4 && flags&0x1 == 0: // SETTINGS
			h.frame(0x4, 0x1, 0, nil)
		case typ == 0x6 && flags&0x1 == 0: // PING
			h.frame(0x6, 0x1, 0, payload)
		case typ == 0x3 || typ == 0x7: // RST_STREAM, GOAWAY
			h.ready <- fmt.Errorf("frame type %d on stream %d: % x", typ, stream, payload)
		}
	}
}

// TestFeedHTTP2ViewerMemory opens idle SSE streams over HTTP/2 (which
// cannot be taken over from net/http: each keeps its handler goroutine)
// and logs the server's memory per stream, heap and stacks, measured in
// the same process with a client that keeps next to nothing per stream.
func TestFeedHTTP2ViewerMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 600 streams")
	}
	const conns, perConn = 3, 200 // the server allows 250 streams per connection
	ts := startTLS(t, Config{PingEvery: time.Hour}, false)
	room := createRoom(t, ts.testServer, `{}`)
	f, err := ts.Lobby().Feed(room)
	if err != nil {
		t.Fatal(err)
	}
	f.Read(-1, false) // the room's snapshot, encoded once
	clients := make([]*h2Client, conns)
	for i := range clients {
		clients[i] = dialH2(t, ts.addr, ts.tls)
		defer clients[i].conn.Close()
	}
	// One stream first, so that what every connection and the room's feed
	// allocate once is in the baseline.
	for _, c := range clients {
		c.get(ts.addr, "/rooms/"+room+"/events")
		if err := <-c.ready; err != nil {
			t.Fatal(err)
		}
	}
	before := inUse()
	for _, c := range clients {
		for range perConn {
			c.get(ts.addr, "/rooms/"+room+"/events")
		}
	}
	for _, c := range clients {
		for range perConn {
			select {
			case err := <-c.ready:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("streams not started within 10 s")
			}
		}
	}
	perViewer := float64(int64(inUse())-int64(before)) / (conns * perConn)
	t.Logf("server memory per idle HTTP/2 SSE viewer: %.1f KB (heap and stacks; %d streams on %d connections)",
		perViewer/1024, conns*perConn, conns)
	if n := f.Viewers(); n != conns*(perConn+1) {
		t.Fatalf("%d viewers, want %d", n, conns*(perConn+1))
	}
	if perViewer > 64<<10 {
		t.Fatalf("%.0f bytes per idle HTTP/2 viewer", perViewer)
	}
}
