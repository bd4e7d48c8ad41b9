package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawDial opens a WebSocket by hand: the handshake is written and read on a
// plain TCP connection, and the frames that follow are read from the
// returned reader with readRawFrame, not by gorilla, so the test sees the
// very bytes the server wrote.
func rawDial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, br
}

// rawFrame is one frame as it came off the wire.
type rawFrame struct {
	fin     bool
	opcode  int
	payload []byte
}

// readRawFrame parses one server frame and rejects anything a server must
// not send: reserved bits, a mask, an unknown opcode, a fragmented or long
// control frame, a frame cut short by the end of the stream.
func readRawFrame(r io.Reader) (rawFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return rawFrame{}, err // io.EOF: the stream ended between frames
	}
	f := rawFrame{fin: h[0]&0x80 != 0, opcode: int(h[0] & 0x0f)}
	if h[0]&0x70 != 0 {
		return f, fmt.Errorf("reserved bits set in %#x", h[0])
	}
	if h[1]&0x80 != 0 {
		return f, errors.New("a server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return f, fmt.Errorf("cut inside a header: %w", err)
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return f, fmt.Errorf("cut inside a header: %w", err)
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	switch f.opcode {
	case websocket.BinaryMessage, websocket.TextMessage:
		if !f.fin {
			return f, errors.New("a fragmented data frame")
		}
		if n > 64<<20 {
			return f, fmt.Errorf("a data frame of %d bytes", n)
		}
	case websocket.CloseMessage, websocket.PingMessage, websocket.PongMessage:
		if !f.fin || n > 125 {
			return f, fmt.Errorf("control frame %d: fin %v, %d bytes", f.opcode, f.fin, n)
		}
	default:
		return f, fmt.Errorf("opcode %d", f.opcode)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, fmt.Errorf("cut inside a frame of %d bytes (opcode %d): %w", n, f.opcode, err)
	}
	return f, nil
}

// A peer that stops reading until its socket is full, with a state frame
// partly written, then sends a frame the server must refuse, gets every data
// frame whole and then the close frame whole, written by the transport's one
// writer after the frame it was in the middle of. The peer reads only once
// the server's Read has failed, so a close written by gorilla's reader on its
// own would show: its write waits behind the drain's, and the write deadline
// it sets on the socket (1 s) cuts the drain's frame short and its own close
// with it. (The peer's own close is echoed the same way; that case guards
// the echo.)
func TestBadFrameWhileSocketFullClosesBetweenFrames(t *testing.T) {
	const size = 30000
	for _, tc := range []struct {
		name    string
		frame   []byte // what the peer sends, masked as a client must
		code    int
		readErr error // what Read returns on the server, nil for any error
	}{
		{"oversized", clientFrame(0x82, bytes.Repeat([]byte{7}, 8192)), websocket.CloseMessageTooBig, websocket.ErrReadLimit},
		{"malformed", clientFrame(0x83, []byte("reserved opcode")), websocket.CloseProtocolError, nil},
		{"peer close", clientFrame(0x88, append([]byte{0x10, 0xe1}, "bye"...)), 4321, nil}, // echoed
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := make(chan Stats, 1)
			readErr := make(chan error, 1)
			url := serve(t, Config{PingInterval: time.Minute, WriteWait: 20 * time.Second}, func(c *Conn) {
				buf := make([]byte, size)
				for i := 0; ; i++ {
					for j := range buf {
						buf[j] = byte(i)
					}
					c.SendState(buf, []byte{byte(i >> 8), byte(i)})
					if st := c.Stats(); int(st.FramesOut) < i-4 && c.writing() {
						sent <- st // the socket is full, a drain is writing a frame
						break
					}
					if i > 10000 {
						sent <- Stats{}
						break
					}
				}
				_, err := c.Read()
				readErr <- err
			})
			nc, br := rawDial(t, url)
			if st := <-sent; st.FramesOut == 0 {
				t.Fatal("the socket never filled")
			}
			if _, err := nc.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-readErr:
				if err == nil || tc.readErr != nil && !errors.Is(err, tc.readErr) {
					t.Fatalf("server Read: %v, want %v", err, tc.readErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server's Read did not fail")
			}

			// Now read everything the server wrote.
			_ = nc.SetReadDeadline(time.Now().Add(15 * time.Second))
			last, states := -1, 0
			for {
				f, err := readRawFrame(br)
				if err != nil {
					t.Fatalf("after %d whole states (last %d): %v", states, last, err)
				}
				switch f.opcode {
				case websocket.PingMessage, websocket.PongMessage:
					continue
				case websocket.BinaryMessage:
					i := -1
					if len(f.payload) == size+2 {
						i = int(f.payload[size])<<8 | int(f.payload[size+1])
					}
					if i <= last || !bytes.Equal(f.payload[:size], bytes.Repeat([]byte{byte(i)}, size)) {
						t.Fatalf("after state %d: a data frame of %d bytes that is not a whole state", last, len(f.payload))
					}
					last = i
					states++
					continue
				}
				// The close frame, whole, after the last whole data frame.
				if len(f.payload) < 2 {
					t.Fatalf("close frame without a code: %q", f.payload)
				}
				if code := int(binary.BigEndian.Uint16(f.payload)); code != tc.code {
					t.Fatalf("close %d %q, want %d", code, f.payload[2:], tc.code)
				}
				break
			}
			if states == 0 {
				t.Fatal("no state frame before the close")
			}
			// Nothing follows the close frame.
			if f, err := readRawFrame(br); err == nil {
				t.Fatalf("a frame after the close: opcode %d, %d bytes", f.opcode, len(f.payload))
			}
		})
	}
}

// clientFrame is a whole, masked client frame with first byte b0.
func clientFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// writing reports whether a drain is writing (for tests).
func (c *Conn) writing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// Once the handshake is done, a write through gorilla never reaches the
// socket: the peer reads only what the transport wrote.
func TestGorillaCannotWrite(t *testing.T) {
	errs := make(chan []error, 1)
	url := serve(t, Config{}, func(c *Conn) {
		errs <- []error{
			c.ws.WriteMessage(websocket.BinaryMessage, []byte("behind its back")),
			c.ws.WriteControl(websocket.PingMessage, []byte("behind its back"), time.Now().Add(time.Second)),
		}
		_ = c.Send([]byte("mine"))
		for {
			if _, err := c.Read(); err != nil {
				return
			}
		}
	})
	ws := dial(t, url)
	pings := make(chan string, 8)
	ws.SetPingHandler(func(p string) error { pings <- p; return nil })
	for _, err := range <-errs {
		if err == nil {
			t.Error("a write through gorilla succeeded")
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil || string(data) != "mine" {
		t.Fatalf("first message %q, %v; want %q", data, err, "mine")
	}
	close(pings)
	for p := range pings {
		if p == "behind its back" {
			t.Fatal("gorilla's ping reached the peer")
		}
	}
}
