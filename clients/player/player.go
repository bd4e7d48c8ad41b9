// Package player is a Go client of Tickwire's player WebSocket (/ws/play):
// it joins a room, sends inputs, pings and chat, and receives snapshots and
// room events. Tests, bots and benchmarks use it.
//
// A Client's methods are safe for concurrent use. Received messages are
// delivered in order on Messages (unless Options.Discard is set); the newest
// snapshot is always available from Latest.
//
// With Options.Delta the client asks for delta snapshots (an addition to
// the protocol): it rebuilds each snapshot from the server's `delta` frames,
// acknowledges it, and delivers it as the same *wire.Snap a client in full
// mode gets, each value within half its column's step of the server's.
//
// With Options.RTC the client also offers a WebRTC DataChannel for its
// state frames (contract 1.1): snapshots then come on the channel, inputs
// go on it, and both fall back to the WebSocket by themselves when it
// fails; Transport tells which path state takes now, Offer offers again.
package player

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/wire"
)

// Options tell Dial where and how to join.
type Options struct {
	URL    string // ws://host:port/ws/play
	Name   string
	Room   string // wire.RoomAuto when empty
	Mode   string // with Room auto: the game mode to play (empty: the server's default)
	Token  string // JWT when the server requires one
	Resume string // resume token from an earlier Welcome
	Header http.Header
	// Discard drops received messages instead of queueing them on
	// Messages; Latest and Stats still follow the stream (for bots).
	Discard bool
	// Buffer is the capacity of Messages (4096). When it is full the
	// client stops reading, as a slow real client would.
	Buffer int
	// Delta asks for delta snapshots (`caps:["delta"]`), which cost a
	// fraction of the bytes of full ones. The client rebuilds them and
	// acknowledges each with the next Input sent within a tick, else with
	// an `ack` of its own.
	Delta bool
	// NoFollow returns a `moved` refusal as a *JoinError instead of
	// following it (see Dial).
	NoFollow bool
	// RTC takes state frames over a WebRTC DataChannel (contract 1.1,
	// "State over WebRTC"): after `welcome` the client offers a `state`
	// channel, receives state on it once open (the same frames, with the
	// same delta and ack handling), sends its inputs on it, and keeps it
	// alive (see RTCKeepalive). Until it opens, and whenever the server
	// sends state on the WebSocket again, state comes there; Transport
	// tells which. An offer the server refuses (`unsupported`) leaves the
	// client on the WebSocket.
	RTC bool
	// RTCSettings is Pion's setting engine for the channel (nil: UDP over
	// IPv4, no mDNS). RTCLoopback keeps ICE on loopback on top of it
	// (tests).
	RTCSettings *webrtc.SettingEngine
	RTCLoopback bool
	// ICEServers for the channel; nil: those of the server's /api/ice.
	ICEServers []webrtc.ICEServer
	// RTCKeepalive is how often the client sends on an otherwise silent
	// channel (250ms): the server sends state on the WebSocket again after
	// about 1 s of silence. Negative: never (tests of that fallback).
	RTCKeepalive time.Duration
}

// JoinError is the server's refusal of a join.
type JoinError struct {
	Code      string // wire error code, e.g. wire.CodeNotFound
	Msg       string
	CloseCode int
	// URL and Room come with wire.CodeMoved: the node hosting the room
	// and the room to join there.
	URL, Room string
	// Retry is the server's hint, in seconds, of when to try again (with
	// wire.CodeOverloaded and wire.CodeRateLimited); 0 when none.
	Retry int
}

func (e *JoinError) Error() string {
	return fmt.Sprintf("player: join refused: %s (%s), close %d", e.Code, e.Msg, e.CloseCode)
}

// Stats count what a client received and sent.
type Stats struct {
	Frames    int64 // frames received
	Bytes     int64 // payload bytes received
	Snaps     int64 // snapshots received (full or rebuilt from deltas)
	Deltas    int64 // of which delta frames, keyframes included
	Keyframes int64 // of which keyframes
	Sent      int64 // frames sent
	LastRTT   time.Duration
	Received  time.Time // when the newest frame arrived
	// With Options.RTC: frames received on the state channel (counted in
	// Frames and Bytes too), frames sent on it (in Sent too), and state
	// frames dropped as older than one already received (the channel does
	// not keep order).
	ChannelFrames int64
	ChannelSent   int64
	Stale         int64
}

// Client is one connected player.
type Client struct {
	ws      *websocket.Conn
	url     string // the WebSocket URL joined (after a `moved`, the other node's)
	welcome *wire.Welcome
	msgs    chan wire.ServerMessage
	done    chan struct{}
	discard bool

	wmu sync.Mutex // serializes writes (one writer at a time)
	seq uint64     // last input seq, guarded by wmu

	latest atomic.Pointer[wire.Snap]
	// Delta mode: rx is used by the reader only; the newest tick to
	// acknowledge is ackN while ackDue is set: the next Input carries it,
	// or ackLoop sends it after a tick (woken through ackWake).
	rx       *wire.DeltaReceiver
	ackN     atomic.Uint64
	ackDue   atomic.Bool
	ackSince atomic.Int64 // unix ns since when ackDue has been set
	ackWake  chan struct{}
	ackDone  chan struct{}
	deltas   atomic.Int64
	keys     atomic.Int64

	// State frames come from the reader and, with Options.RTC, from the
	// channel: stateMu orders them (rx, the newest tick, delivery).
	stateMu  sync.Mutex
	newestN  uint64 // tick of the newest state frame delivered, guarded by stateMu
	viaChan  atomic.Bool
	quit     chan struct{} // closed when the reader ends, before msgs is closed
	rtc      *rtcPeer      // nil without Options.RTC
	chFrames atomic.Int64
	chSent   atomic.Int64
	stale    atomic.Int64

	frames atomic.Int64
	bytes  atomic.Int64
	snaps  atomic.Int64
	sent   atomic.Int64
	rtt    atomic.Int64
	recvAt atomic.Int64

	errMu sync.Mutex // guards err
	err   error
}

// Dial connects, joins and waits for `welcome`. A refused join returns a
// *JoinError. When the server answers that the room is hosted by another
// node (`moved`, an addition), Dial joins the room it names at that node's
// URL, once, with the same name, token and resume token; Options.NoFollow
// turns that off.
func Dial(ctx context.Context, o Options) (*Client, error) {
	c, err := dial(ctx, o)
	var je *JoinError
	if err == nil || o.NoFollow || !errors.As(err, &je) || je.Code != wire.CodeMoved || je.URL == "" {
		return c, err
	}
	u, uerr := wire.WebSocketURL(strings.TrimRight(je.URL, "/")+wire.PathPlay, wire.PathPlay)
	if uerr != nil {
		return nil, fmt.Errorf("%w (following it: %v)", err, uerr)
	}
	o.URL = u
	if je.Room != "" {
		o.Room = je.Room
	}
	return dial(ctx, o)
}

func dial(ctx context.Context, o Options) (*Client, error) {
	if o.Room == "" {
		o.Room = wire.RoomAuto
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, o.URL, o.Header)
	if err != nil {
		return nil, err
	}
	c := &Client{ws: ws, url: o.URL, msgs: make(chan wire.ServerMessage, o.Buffer), done: make(chan struct{}),
		quit: make(chan struct{}), discard: o.Discard}
	join := &wire.Join{Name: o.Name, Room: o.Room, Token: o.Token, Resume: o.Resume, Mode: o.Mode}
	if o.Delta {
		join.Caps = []string{wire.CapDelta}
	}
	if err := c.send(join); err != nil {
		ws.Close()
		return nil, err
	}
	if err := c.awaitWelcome(ctx); err != nil {
		ws.Close()
		return nil, err
	}
	if c.welcome.Schema == nil {
		ws.Close()
		return nil, errors.New("player: welcome without a schema")
	}
	if o.Delta {
		c.rx = wire.NewDeltaReceiver(c.welcome.Schema, c.welcome.Hz)
		c.ackWake = make(chan struct{}, 1)
		c.ackDone = make(chan struct{})
		go c.ackLoop()
	}
	if o.RTC {
		r, err := newRTCPeer(ctx, c, o)
		if err != nil {
			ws.Close()
			return nil, err
		}
		c.rtc = r
	}
	go c.readLoop()
	if c.rtc != nil {
		if err := c.Offer(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Client) awaitWelcome(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = c.ws.SetReadDeadline(time.Now()) })
	defer stop()
	var refusal *wire.Error
	for {
		_, frame, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				je := &JoinError{CloseCode: ce.Code, Msg: ce.Text}
				if refusal != nil {
					je.Code, je.Msg, je.URL, je.Room, je.Retry = refusal.Code, refusal.Msg, refusal.URL, refusal.Room, refusal.Retry
				}
				return je
			}
			return err
		}
		m, err := wire.DecodeServer(frame)
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *wire.Welcome:
			c.welcome = m
			return nil
		case *wire.Error:
			refusal = m
		}
	}
}

func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.msgs)
	for {
		_, frame, err := c.ws.ReadMessage()
		if err != nil {
			c.setErr(err)
			c.ws.Close()
			close(c.quit)
			if c.rtc != nil {
				c.rtc.close() // waits for the channel's callbacks
			}
			return
		}
		c.receive(frame, false)
	}
}

// receive handles one frame from the WebSocket (the reader) or, with
// viaChannel, from the state channel. State frames are delivered in tick
// order: one older than a frame already delivered is dropped.
func (c *Client) receive(frame []byte, viaChannel bool) {
	now := time.Now()
	c.frames.Add(1)
	c.bytes.Add(int64(len(frame)))
	c.recvAt.Store(now.UnixNano())
	if viaChannel {
		c.chFrames.Add(1)
	}
	m, err := wire.DecodeServer(frame)
	if err != nil {
		return // unknown types are ignored
	}
	switch m := m.(type) {
	case *wire.Snap, *wire.Delta:
		c.stateMu.Lock()
		defer c.stateMu.Unlock()
		snap, ok := m.(*wire.Snap)
		if d, isDelta := m.(*wire.Delta); isDelta {
			if snap = c.applyDelta(d); snap == nil {
				return
			}
		} else if !ok {
			return
		}
		if snap.N <= c.newestN {
			c.stale.Add(1)
			return
		}
		c.newestN = snap.N
		c.viaChan.Store(viaChannel)
		c.snaps.Add(1)
		c.latest.Store(snap)
		c.deliver(snap)
		return
	case *wire.Pong:
		c.rtt.Store(int64(time.Duration((float64(now.UnixNano())/1e6 - m.TS) * float64(time.Millisecond))))
	case *wire.RTCAnswer:
		if c.rtc != nil {
			c.rtc.answer(m.SDP)
		}
	case *wire.RTCICE:
		if c.rtc != nil {
			c.rtc.candidate(m.Candidate)
		}
	case *wire.Error:
		if c.rtc != nil && m.Code == wire.CodeUnsupported {
			c.rtc.refuse(m.Msg)
		}
	}
	c.deliver(m)
}

// deliver queues m on Messages unless the client discards them or the
// reader has ended.
func (c *Client) deliver(m wire.ServerMessage) {
	if c.discard {
		return
	}
	select {
	case c.msgs <- m:
	case <-c.quit:
	}
}

// applyDelta rebuilds the snapshot a delta frame describes and has it
// acknowledged; it returns nil for a frame it cannot use, and then asks for a
// keyframe.
func (c *Client) applyDelta(d *wire.Delta) *wire.Snap {
	if c.rx == nil {
		return nil // not asked for; ignored like an unknown type
	}
	before := c.rx.Keyframes()
	snap, err := c.rx.Apply(d)
	if err != nil {
		c.ackSnapshot(0)
		return nil
	}
	c.deltas.Add(1)
	if c.rx.Keyframes() != before {
		c.keys.Add(1)
	}
	if snap.N > c.newestN { // an older frame (reordered on the channel) is not acknowledged
		c.ackSnapshot(snap.N)
	}
	return snap
}

// ackSnapshot makes n the next tick to acknowledge (latest wins); 0 asks
// for a keyframe at once.
func (c *Client) ackSnapshot(n uint64) {
	c.ackN.Store(n)
	if c.ackDue.CompareAndSwap(false, true) {
		c.ackSince.Store(time.Now().UnixNano())
	}
	select {
	case c.ackWake <- struct{}{}:
	default:
	}
}

// takeAck returns the tick an input should acknowledge, or 0.
func (c *Client) takeAck() uint64 {
	if n := c.ackN.Load(); n != 0 && c.ackDue.CompareAndSwap(true, false) {
		return n
	}
	return 0
}

// ackLoop sends `ack` messages for the reader, so that the reader never
// waits on a write: an acknowledgement due for a tick and a quarter that no
// input has carried meanwhile goes on its own (a client sending inputs
// every tick then sends one message per tick, not two).
func (c *Client) ackLoop() {
	defer close(c.ackDone)
	delay := 5 * time.Second / time.Duration(4*c.welcome.Hz)
	wait := time.NewTimer(delay)
	defer wait.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.ackWake:
		}
		for c.ackDue.Load() {
			if c.ackN.Load() != 0 { // a keyframe request (0) goes at once
				left := delay - time.Since(time.Unix(0, c.ackSince.Load()))
				if left > 0 {
					wait.Reset(left)
					select {
					case <-c.done:
						return
					case <-wait.C:
					}
					continue // taken by an input meanwhile, or due since later
				}
			}
			if c.ackDue.CompareAndSwap(true, false) {
				if err := c.send(&wire.Ack{N: c.ackN.Load()}); err != nil {
					return
				}
			}
		}
	}
}

func (c *Client) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Err returns why the connection ended, or nil while it is up. A close by
// the server is a *websocket.CloseError; see CloseCode.
func (c *Client) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// CloseCode returns the close code in err, or 0.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// URL returns the WebSocket URL the client joined at: Options.URL, or the
// node a `moved` sent it to.
func (c *Client) URL() string { return c.url }

// Welcome returns the server's welcome.
func (c *Client) Welcome() *wire.Welcome { return c.welcome }

// ID is this player's entity id.
func (c *Client) ID() uint32 { return c.welcome.ID }

// Messages delivers every message after `welcome`, in order; it is closed
// when the connection ends.
func (c *Client) Messages() <-chan wire.ServerMessage { return c.msgs }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Latest returns the newest snapshot, or nil before the first.
func (c *Client) Latest() *wire.Snap { return c.latest.Load() }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Frames: c.frames.Load(), Bytes: c.bytes.Load(), Snaps: c.snaps.Load(), Sent: c.sent.Load(),
		Deltas: c.deltas.Load(), Keyframes: c.keys.Load(),
		LastRTT: time.Duration(c.rtt.Load()), Received: time.Unix(0, c.recvAt.Load()),
		ChannelFrames: c.chFrames.Load(), ChannelSent: c.chSent.Load(), Stale: c.stale.Load(),
	}
}

func (c *Client) send(m wire.ClientMessage) error {
	frame, err := wire.Encode(m)
	if err != nil {
		return err
	}
	return c.SendRaw(frame)
}

// SendRaw writes one binary frame as it is (tests use it for bad input).
func (c *Client) SendRaw(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := c.ws.WriteMessage(websocket.BinaryMessage, frame)
	if err == nil {
		c.sent.Add(1)
	}
	return err
}

// Input sends an input with the next seq and returns that seq: one value
// per input field of the room's mode, in the schema's order (arena: dx,
// dy); values past the mode's fields are dropped, missing ones count as 0.
func (c *Client) Input(values ...float64) (uint64, error) {
	c.wmu.Lock()
	c.seq++
	seq := c.seq
	c.wmu.Unlock()
	m := wire.NewInput(seq, c.welcome.Schema.Input, values...)
	m.N = c.takeAck()
	if c.rtc != nil {
		frame, err := wire.Encode(m)
		if err != nil {
			return seq, err
		}
		if c.rtc.sendInput(frame) {
			return seq, nil
		}
		return seq, c.SendRaw(frame)
	}
	return seq, c.send(m)
}

// Schema returns the room's tables and input fields, from `welcome`.
func (c *Client) Schema() *wire.Schema { return c.welcome.Schema }

// Ping sends an application ping stamped with the local clock in ms; the
// pong's round trip shows in Stats().LastRTT.
func (c *Client) Ping() error {
	return c.send(&wire.Ping{TS: float64(time.Now().UnixNano()) / 1e6})
}

// Chat sends a chat line.
func (c *Client) Chat(text string) error { return c.send(&wire.Chat{Text: text}) }

// Typing sends the "is typing" signal.
func (c *Client) Typing() error { return c.send(&wire.Typing{}) }

// Leave leaves the room; the server then closes the connection normally.
func (c *Client) Leave() error { return c.send(&wire.Leave{}) }

// Close drops the connection without leaving (the server holds the seat
// for its grace period) and waits for the reader to end.
func (c *Client) Close() error {
	err := c.ws.Close()
	go func() {
		for range c.msgs { // unblock a reader stuck on a full channel
		}
	}()
	<-c.done
	if c.ackDone != nil {
		<-c.ackDone
	}
	return err
}
