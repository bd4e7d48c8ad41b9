package transport

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// serve runs handle on every upgraded connection of a loopback server and
// returns its ws:// URL.
func serve(t *testing.T, cfg Config, handle func(*Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, cfg)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		handle(c)
		<-c.Done()
	}))
	t.Cleanup(func() { hs.Close(); wg.Wait() })
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// readAll reads until the connection ends and returns the data frames and
// the close error.
func readAll(ws *websocket.Conn) ([][]byte, error) {
	var frames [][]byte
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return frames, err
		}
		frames = append(frames, data)
	}
}

func TestReliableOverflowClosesSlowConsumer(t *testing.T) {
	result := make(chan error, 1)
	url := serve(t, Config{QueueSize: 16, WriteWait: 10 * time.Second}, func(c *Conn) {
		msg := bytes.Repeat([]byte("x"), 1024)
		for i := 0; i < 50000; i++ {
			if err := c.Send(msg); err != nil {
				result <- err
				go func() { // a reader, as a server session has
					for {
						if _, err := c.Read(); err != nil {
							return
						}
					}
				}()
				return
			}
		}
		result <- nil
	})
	ws := dial(t, url) // never reads until the server gives up
	if err := <-result; err != ErrSlowConsumer {
		t.Fatalf("Send = %v, want ErrSlowConsumer", err)
	}
	_, err := readAll(ws)
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.ClosePolicyViolation || ce.Text != "slow consumer" {
		t.Fatalf("client saw %v, want close 1008 slow consumer", err)
	}
}

func TestStateIsLatestWins(t *testing.T) {
	stats := make(chan Stats, 1)
	url := serve(t, Config{}, func(c *Conn) {
		// Hand over many states while the writer is busy with a large
		// reliable message.
		_ = c.Send(bytes.Repeat([]byte("r"), 8<<20))
		for i := 0; i < 1000; i++ {
			c.SendState([]byte("state-"), []byte{byte(i / 256), byte(i % 256)})
		}
		stats <- c.Stats()
		for {
			if _, err := c.Read(); err != nil {
				return
			}
		}
	})
	ws := dial(t, url)
	st := <-stats
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var frames [][]byte
	for len(frames) < 2 {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, data)
	}
	if want := "state-" + string([]byte{999 / 256, 999 % 256}); string(frames[1]) != want {
		t.Fatalf("second frame %q, want the newest state %q", frames[1], want)
	}
	if st.StatesReplaced < 990 {
		t.Fatalf("replaced %d states, want almost all of 1000", st.StatesReplaced)
	}
	_ = ws.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, data, err := ws.ReadMessage(); err == nil {
		t.Fatalf("a stale state followed: %q", data)
	}
}

func TestPingsMeasureRTTAndMissingPongsTimeOut(t *testing.T) {
	type result struct {
		rtt     time.Duration
		timeout bool
	}
	results := make(chan result, 2)
	cfg := Config{PingInterval: 50 * time.Millisecond, PongWait: 300 * time.Millisecond}
	url := serve(t, cfg, func(c *Conn) {
		_, err := c.Read()
		rtt, _ := c.RTT()
		results <- result{rtt, IsTimeout(err)}
	})
	// A client that answers pings (gorilla's default) while reading.
	ws := dial(t, url)
	go func() { _, _ = readAll(ws) }()
	time.Sleep(400 * time.Millisecond)
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte("hi"))
	if r := <-results; r.rtt <= 0 || r.rtt > time.Second || r.timeout {
		t.Fatalf("answering client: %+v", r)
	}
	// A client that ignores pings.
	mute := dial(t, url)
	mute.SetPingHandler(func(string) error { return nil })
	go func() { _, _ = readAll(mute) }()
	select {
	case r := <-results:
		if !r.timeout || r.rtt != 0 {
			t.Fatalf("silent client: %+v, want a timeout", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no timeout for a client that answers no ping")
	}
}

func TestCloseAfterQueuedMessages(t *testing.T) {
	url := serve(t, Config{}, func(c *Conn) {
		_ = c.Send([]byte("one"))
		_ = c.Send([]byte("two"))
		c.Close(4000, "bad-message")
		c.Close(1000, "second close is ignored")
		if err := c.Send([]byte("late")); err != ErrClosed {
			t.Errorf("Send after Close = %v", err)
		}
		for {
			if _, err := c.Read(); err != nil {
				return
			}
		}
	})
	frames, err := readAll(dial(t, url))
	if len(frames) != 2 || string(frames[0]) != "one" || string(frames[1]) != "two" {
		t.Fatalf("frames %q", frames)
	}
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4000 || ce.Text != "bad-message" {
		t.Fatalf("close %v", err)
	}
}

func TestPeerPingAnsweredAndCloseEchoed(t *testing.T) {
	url := serve(t, Config{}, func(c *Conn) {
		for {
			if _, err := c.Read(); err != nil {
				return
			}
		}
	})
	ws := dial(t, url)
	pongs := make(chan string, 1)
	ws.SetPongHandler(func(p string) error { pongs <- p; return nil })
	closes := make(chan int, 1)
	ws.SetCloseHandler(func(code int, _ string) error { closes <- code; return nil })
	go func() { _, _ = readAll(ws) }()
	if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p != "are you there" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "bye"), time.Now().Add(time.Second))
	select {
	case code := <-closes:
		if code != 4321 {
			t.Fatalf("close echoed with %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("close not echoed")
	}
}

func TestLargeFrames(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 20000) // 200 KB: header, then the payload
	mid := bytes.Repeat([]byte("m"), 300)            // 16-bit length
	url := serve(t, Config{}, func(c *Conn) {
		_ = c.Send(mid)
		_ = c.Send(big)
		c.SendState(big[:70000], []byte{1, 2})
		for {
			if _, err := c.Read(); err != nil {
				return
			}
		}
	})
	ws := dial(t, url)
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, want := range [][]byte{mid, big, append(append([]byte{}, big[:70000]...), 1, 2)} {
		_, got, err := ws.ReadMessage()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
	}
}

// States written at once by the sender's goroutine fill the socket of a
// client that does not read; the frame cut short there is finished by a
// drain, so the client reads only whole frames, in order, up to the
// newest, although the sender reuses one buffer for all of them.
func TestStatesToAFullSocketStayWhole(t *testing.T) {
	const n = 400
	sent := make(chan Stats, 1)
	url := serve(t, Config{}, func(c *Conn) {
		buf := make([]byte, 30000) // reused, as a room reuses its encoder's bytes
		for i := range n {
			for j := range buf {
				buf[j] = byte(i)
			}
			c.SendState(buf, []byte{byte(i >> 8), byte(i)})
		}
		sent <- c.Stats()
		for {
			if _, err := c.Read(); err != nil {
				return
			}
		}
	})
	ws := dial(t, url)
	st := <-sent // written while the client did not read
	if st.FramesOut == 0 || st.FramesOut == n {
		t.Fatalf("%d of %d frames written before the socket filled; want some, not all", st.FramesOut, n)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	last := -1
	for last != n-1 {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after frame %d: %v", last, err)
		}
		i := int(data[len(data)-2])<<8 | int(data[len(data)-1])
		if len(data) != 30002 || i <= last || !bytes.Equal(data[:30000], bytes.Repeat([]byte{byte(i)}, 30000)) {
			t.Fatalf("frame %d (after %d): %d bytes, not a whole state", i, last, len(data))
		}
		last = i
	}
}

// TestFailOverAFullQueue: a refusal sent to a peer whose queue is full of
// answers it has not read (a flood of requests) goes out as the last
// message with its own close code, not as a slow consumer's 1008.
func TestFailOverAFullQueue(t *testing.T) {
	url := serve(t, Config{QueueSize: 16, WriteWait: 10 * time.Second}, func(c *Conn) {
		msg := bytes.Repeat([]byte("p"), 64<<10)
		for range 16 { // the queue fills up behind the socket
			_ = c.Reply(msg)
		}
		c.Fail([]byte("refused"), 4029, "rate-limited")
		go func() {
			for {
				if _, err := c.Read(); err != nil {
					return
				}
			}
		}()
	})
	ws := dial(t, url)
	frames, err := readAll(ws)
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 4029 {
		t.Fatalf("client saw %v after %d frames, want close 4029", err, len(frames))
	}
	if len(frames) == 0 || string(frames[len(frames)-1]) != "refused" {
		t.Fatalf("the refusal was not the last message (%d frames)", len(frames))
	}
}
