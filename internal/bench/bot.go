package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/wire"
)

// bot is a lean player connection for load: it reads frames into one
// reused buffer and hands each to a callback with its arrival time, and it
// encodes inputs by hand. It does not decode snapshots.
type bot struct {
	ws      *websocket.Conn
	welcome *wire.Welcome
	rx      *wire.DeltaReceiver // rebuilds delta snapshots; nil in full mode
	player  game.Bot            // decides the inputs of play
	field   game.Field

	wmu sync.Mutex    // guards writes, the seq's increments and out
	seq atomic.Uint64 // written under wmu; read by the reader without it
	out []byte
	ack atomic.Uint64           // delta mode: the newest rebuilt tick, acknowledged with the next input
	rtc atomic.Pointer[rtcLink] // the state channel (bench game -rtc); nil when none
	// sent, when set (timeInputs), holds when the recent inputs were sent,
	// in Unix ns, by seq modulo its length.
	sent *[256]atomic.Int64
}

// timeInputs has the bot note when it sends each input, for inputDelay.
func (b *bot) timeInputs() { b.sent = new([256]atomic.Int64) }

// inputDelay returns how long ago the input acknowledged by a full
// snapshot frame f (its `ack`, the newest input seq the room applied) was
// sent, when the bot times its inputs and ack is newer than after.
func (b *bot) inputDelay(f []byte, after uint64, now time.Time) (ack uint64, delay time.Duration, ok bool) {
	if b.sent == nil {
		return 0, 0, false
	}
	ack, ok = snapAck(f)
	if !ok || ack <= after || ack+uint64(len(b.sent)) <= b.seq.Load() {
		return ack, 0, false
	}
	return ack, now.Sub(time.Unix(0, b.sent[ack%uint64(len(b.sent))].Load())), true
}

// snapAck reads the `ack` that ends a full snapshot frame: the key "ack"
// (a msgpack fixstr), then its value, an unsigned integer.
func snapAck(f []byte) (uint64, bool) {
	for _, size := range []int{1, 2, 3, 5, 9} {
		if len(f) < size+4 {
			return 0, false
		}
		key, v := f[len(f)-size-4:len(f)-size], f[len(f)-size:]
		if string(key) != "\xa3ack" {
			continue
		}
		switch {
		case size == 1 && v[0] < 0x80:
			return uint64(v[0]), true
		case size == 2 && v[0] == 0xcc:
			return uint64(v[1]), true
		case size == 3 && v[0] == 0xcd:
			return uint64(binary.BigEndian.Uint16(v[1:])), true
		case size == 5 && v[0] == 0xce:
			return uint64(binary.BigEndian.Uint32(v[1:])), true
		case size == 9 && v[0] == 0xcf:
			return binary.BigEndian.Uint64(v[1:]), true
		}
	}
	return 0, false
}

// link returns the bot's state channel, or nil.
func (b *bot) link() *rtcLink { return b.rtc.Load() }

// dialBot connects to the player WebSocket at url and joins room, asking
// for delta snapshots when delta is set.
func dialBot(ctx context.Context, url, name, room string, counter *Counter, delta bool) (*bot, error) {
	return joinBot(ctx, websocket.Dialer{
		NetDialContext:   counter.dial(true),
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  512,
	}, url, name, room, delta)
}

// dialBatchBot is dialBot for a player that reads its socket at most once
// per every, taking what arrived meanwhile in one read (see pacedConn).
func dialBatchBot(ctx context.Context, url, name, room string, counter *Counter, every time.Duration) (*bot, error) {
	dial := counter.dial(false)
	return joinBot(ctx, websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &pacedConn{Conn: c, every: every}, nil
		},
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   32 << 10,
		WriteBufferSize:  512,
	}, url, name, room, false)
}

// pacedConn reads from its connection at most once per every. Under a
// WebSocket reader, whose buffer asks the socket for more only when it is
// empty, a player then costs the load process one read and one wake per
// batch of frames instead of one per frame; the frames' arrival times are
// only known to within every.
type pacedConn struct {
	net.Conn
	every time.Duration
	next  time.Time // the earliest time of the next read; one reader only
}

func (p *pacedConn) Read(b []byte) (int, error) {
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	}
	n, err := p.Conn.Read(b)
	p.next = time.Now().Add(p.every)
	return n, err
}

// joinBot dials url with d and joins room.
func joinBot(ctx context.Context, d websocket.Dialer, url, name, room string, delta bool) (*bot, error) {
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	b := &bot{ws: ws}
	j := &wire.Join{Name: name, Room: room}
	if delta {
		j.Caps = []string{wire.CapDelta}
	}
	join, _ := wire.Encode(j)
	if err := ws.WriteMessage(websocket.BinaryMessage, join); err != nil {
		ws.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = ws.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return nil, fmt.Errorf("join %s: %w", room, err)
		}
		m, err := wire.DecodeServer(frame)
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *wire.Welcome:
			if m.Schema == nil {
				ws.Close()
				return nil, fmt.Errorf("join %s: welcome without a schema", room)
			}
			b.welcome = m
			if delta {
				b.rx = wire.NewDeltaReceiver(m.Schema, m.Hz)
			}
			b.field = game.Field{W: m.W, H: m.H, Speed: m.Speed, R: m.R}
			b.player = game.NewWanderBot(uint64(m.ID)<<32^uint64(len(room))^uint64(time.Now().UnixNano()),
				&game.Spec{Tables: m.Schema.Tables, Input: m.Schema.Input})
			return b, nil
		case *wire.Error:
			ws.Close()
			return nil, fmt.Errorf("join %s: %s: %s", room, m.Code, m.Msg)
		}
	}
}

// read reads frames until the connection ends, calling f with each frame
// (valid only during the call), the time it was read and the time its last
// bytes reached the socket (the kernel's receive timestamp; zero when not
// known).
func (b *bot) read(f func(at, rx time.Time, frame []byte)) error {
	buf := make([]byte, 0, 2048)
	for {
		_, r, err := b.ws.NextReader()
		if err != nil {
			return err
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		now := time.Now()
		rx, _ := rxStamp(b.ws.UnderlyingConn())
		f(now, rx, buf)
	}
}

// input sends an input with the next seq: values of the mode's input
// fields in order.
func (b *bot) input(values ...float64) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	seq := b.seq.Add(1)
	if b.sent != nil {
		b.sent[seq%uint64(len(b.sent))].Store(time.Now().UnixNano())
	}
	b.out = player.AppendInput(b.out[:0], seq, b.ack.Load(), b.welcome.Schema.Input, values)
	if b.link().send(b.out) {
		return nil
	}
	return b.ws.WriteMessage(websocket.BinaryMessage, b.out)
}

// play sends the input its player picks, blind (no snapshot).
func (b *bot) play() error {
	return b.input(b.player.Input(nil, b.welcome.ID, b.field)...)
}

// chat sends a chat line.
func (b *bot) chat(text string) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.out = player.AppendChat(b.out[:0], text)
	return b.ws.WriteMessage(websocket.BinaryMessage, b.out)
}

// frameHead reads the head of a received frame, once for all its uses:
// the head of a malformed frame is empty (its type is none of the known
// ones).
func frameHead(f []byte) player.FrameHead {
	h, err := player.Head(f)
	if err != nil {
		return player.FrameHead{}
	}
	return h
}

// snapshot returns the tick and server time of a snapshot frame f with
// head h (see frameHead), `snap` or `delta`; a delta frame is applied and
// acknowledged. ok is false for other frames.
func (b *bot) snapshot(h player.FrameHead, f []byte) (n uint64, st int64, ok bool) {
	switch {
	case h.T == wire.TypeSnap:
		return h.N, h.ST, true
	case h.T != wire.TypeDelta || b.rx == nil:
		return 0, 0, false
	}
	m, err := wire.DecodeServer(f)
	if err != nil {
		return 0, 0, false
	}
	s, err := b.rx.ApplyState(m.(*wire.Delta))
	if err != nil {
		return 0, 0, false
	}
	// Acknowledged with the next input (`n` in `input`), as a client that
	// sends inputs every tick does: one message per tick instead of two.
	b.ack.Store(s.N)
	return s.N, s.ST, true
}

func (b *bot) close() {
	_ = b.ws.Close()
	b.link().close()
}
