package rtc

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/wire"
)

// PeerConfig connects a Peer to its player's session.
type PeerConfig struct {
	// Signal sends a message to the player on its WebSocket: the
	// `rtc-answer` to each offer, then its `rtc-ice` candidates, in that
	// order. It is called with a lock of the peer held and must neither
	// block for long nor call back into the Peer.
	Signal func(m wire.ServerMessage)
	// Receive is given each message that arrives on the state channel; the
	// bytes are valid until it returns. Calls do not overlap: a new offer
	// closes the previous connection, and waits for its callbacks, first.
	Receive func(msg []byte)
}

// OfferError is an offer or candidate the peer could not use: the client's
// fault, answered with `error` `bad-message`.
type OfferError struct{ Err error }

func (e *OfferError) Error() string { return e.Err.Error() }

func (e *OfferError) Unwrap() error { return e.Err }

// BadMessage reports true: the message that caused it is to be refused as
// bad (lobby checks for this method).
func (*OfferError) BadMessage() bool { return true }

func badOffer(format string, a ...any) error { return &OfferError{Err: fmt.Errorf(format, a...)} }

// Peer is one player's state channel: its current peer connection, if any,
// and the writer goroutine sending state frames on it.
type Peer struct {
	s   *Service
	cfg PeerConfig

	sig     sync.Mutex                // serializes offers and candidates, and guards the fields below
	pending []webrtc.ICECandidateInit // candidates received before an offer

	cur atomic.Pointer[conn] // the newest offer's connection, nil before one

	out       sync.Mutex // guards next and has
	next      []byte     // the newest state frame not yet written
	has       bool
	wake      chan struct{}
	done      chan struct{} // closed by Close
	stopped   chan struct{} // closed when the writer has ended
	once      sync.Once
	sent      atomic.Int64
	dropped   atomic.Int64
	congested atomic.Int64
}

// conn is one offer's peer connection.
type conn struct {
	pc       *webrtc.PeerConnection
	dc       atomic.Pointer[webrtc.DataChannel] // the open `state` channel
	failed   atomic.Bool                        // the connection failed or closed, or the channel closed
	lost     atomic.Bool                        // ICE is disconnected (it may come back)
	lastRecv atomic.Int64                       // unix ns of the newest message, or of the channel's opening
	heard    atomic.Bool                        // the client has sent on the channel: its silence counts
	reading  sync.WaitGroup                     // the channel's reader

	mu       sync.Mutex // guards answered and queued
	answered bool
	queued   []*wire.ICECandidate // local candidates gathered before the answer went out
}

// NewPeer returns a player's Peer; the caller must Close it. It opens no
// connection before an offer.
func (s *Service) NewPeer(cfg PeerConfig) (*Peer, error) {
	p := &Peer{s: s, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	if !s.track(p) {
		return nil, ErrClosed
	}
	go p.writeLoop()
	return p, nil
}

// Offer takes an SDP offer, replacing the peer's previous connection, and
// sends the answer and then the local candidates through Signal. An offer
// that cannot be used gives an *OfferError.
func (p *Peer) Offer(sdp string) error {
	p.sig.Lock()
	defer p.sig.Unlock()
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	if !strings.Contains(sdp, "m=application") {
		return badOffer("rtc-offer: the offer has no DataChannel (no m=application section)")
	}
	api, cert, err := p.s.webrtcAPI()
	if err != nil {
		return err
	}
	if old := p.cur.Swap(nil); old != nil {
		old.close()
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{Certificates: []webrtc.Certificate{cert}})
	if err != nil {
		return fmt.Errorf("rtc: %w", err)
	}
	c := &conn{pc: pc}
	p.watch(c)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		c.close()
		return badOffer("rtc-offer: not a usable SDP offer: %v", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err == nil {
		err = pc.SetLocalDescription(answer)
	}
	if err != nil {
		c.close()
		return badOffer("rtc-offer: cannot answer this offer: %v", err)
	}
	p.cur.Store(c)
	for _, ci := range p.pending {
		_ = pc.AddICECandidate(ci)
	}
	p.pending = nil
	c.mu.Lock()
	p.cfg.Signal(&wire.RTCAnswer{SDP: pc.LocalDescription().SDP})
	c.answered = true
	for _, cand := range c.queued {
		p.cfg.Signal(&wire.RTCICE{Candidate: cand})
	}
	c.queued = nil
	c.mu.Unlock()
	return nil
}

// watch installs c's callbacks.
func (p *Peer) watch(c *conn) {
	c.pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		cand := WireCandidate(ic) // nil: the end of the candidates
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.answered {
			c.queued = append(c.queued, cand)
			return
		}
		if p.cur.Load() == c {
			p.cfg.Signal(&wire.RTCICE{Candidate: cand})
		}
	})
	c.pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		c.lost.Store(st == webrtc.ICEConnectionStateDisconnected)
	})
	c.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			c.failed.Store(true)
		}
	})
	c.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != wire.StateChannelLabel {
			_ = dc.Close() // not ours
			return
		}
		dc.OnOpen(func() {
			raw, err := dc.Detach()
			if err != nil {
				c.failed.Store(true)
				return
			}
			c.lastRecv.Store(time.Now().UnixNano())
			c.dc.Store(dc)
			c.reading.Add(1)
			go c.read(p, dc, raw)
		})
	})
}

// maxInbound is the largest message a client may send on its channel (an
// `input` or an `ack` is a few dozen bytes); a larger one closes it.
const maxInbound = 4096

// read hands what arrives on the detached channel to Receive, one message
// at a time, until the channel or its connection closes. Detaching spares
// a peer Pion's own reader and its 64 KiB buffer.
func (c *conn) read(p *Peer, dc *webrtc.DataChannel, raw io.ReadWriteCloser) {
	defer c.reading.Done()
	defer func() {
		c.failed.Store(true)
		c.dc.CompareAndSwap(dc, nil)
		_ = raw.Close()
	}()
	buf := make([]byte, 512)
	for {
		n, err := raw.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) && len(buf) < maxInbound {
			buf = make([]byte, maxInbound) // the message waits for a larger buffer
			continue
		}
		if err != nil {
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		c.heard.Store(true)
		if p.cfg.Receive != nil {
			p.cfg.Receive(buf[:n])
		}
	}
}

// close ends the connection and waits for its reader.
func (c *conn) close() {
	c.failed.Store(true)
	c.dc.Store(nil)
	_ = c.pc.GracefulClose()
	c.reading.Wait()
}

// AddCandidate adds a remote candidate to the current connection, or keeps
// it for the next offer when there is none yet; nil (the end of the
// client's candidates) is accepted and changes nothing. A candidate that
// cannot be parsed gives an *OfferError.
func (p *Peer) AddCandidate(cand *wire.ICECandidate) error {
	if cand == nil || cand.Candidate == "" {
		return nil
	}
	init := PionCandidate(cand)
	p.sig.Lock()
	defer p.sig.Unlock()
	c := p.cur.Load()
	if c == nil {
		if len(p.pending) < 64 {
			p.pending = append(p.pending, init)
		}
		return nil
	}
	if err := c.pc.AddICECandidate(init); err != nil {
		return badOffer("rtc-ice: not a usable candidate: %v", err)
	}
	return nil
}

// Open reports whether state frames go on the channel now: it is open, its
// connection has not failed, and, once the client has sent anything on it,
// something arrived on it within Config.Idle.
func (p *Peer) Open() bool {
	_, ok := p.usable()
	return ok
}

func (p *Peer) usable() (*webrtc.DataChannel, bool) {
	c := p.cur.Load()
	if c == nil || c.failed.Load() || c.lost.Load() {
		return nil, false
	}
	dc := c.dc.Load()
	if dc == nil {
		return nil, false
	}
	if c.heard.Load() && time.Duration(time.Now().UnixNano()-c.lastRecv.Load()) > p.s.cfg.Idle {
		return nil, false
	}
	return dc, true
}

// SendState takes shared followed by tail as the next state frame for the
// channel and reports true, or reports false, keeping nothing, when the
// frame is to go on the WebSocket (see the package comment). It never
// blocks; the bytes are copied.
func (p *Peer) SendState(shared, tail []byte) bool {
	if max := p.s.cfg.MaxFrame; max >= 0 && len(shared)+len(tail) > max {
		return false
	}
	dc, ok := p.usable()
	if !ok {
		return false
	}
	if dc.BufferedAmount() > p.s.cfg.MaxBuffered {
		p.congested.Add(1)
		p.s.congested.Add(1)
		return false
	}
	p.out.Lock()
	p.next = append(append(p.next[:0], shared...), tail...)
	p.has = true
	p.out.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

// writeLoop sends the newest frame each time it is woken, until Close.
func (p *Peer) writeLoop() {
	defer close(p.stopped)
	var buf []byte
	for {
		select {
		case <-p.done:
			return
		case <-p.wake:
		}
		p.out.Lock()
		if !p.has {
			p.out.Unlock()
			continue
		}
		buf, p.next = p.next, buf // the spare buffer becomes the next one
		p.has = false
		p.out.Unlock()
		// SendState judged the buffered amount; only this goroutine
		// writes, so it has grown by this frame's predecessor at most.
		dc, ok := p.usable()
		if !ok || dc.Send(buf) != nil {
			// Gone since SendState took the frame: stale by the next
			// tick, so dropped rather than queued.
			p.dropped.Add(1)
			p.s.dropped.Add(1)
			continue
		}
		p.sent.Add(1)
		p.s.bytesOut.Add(int64(len(buf)))
	}
}

// Stats are a peer's counters.
type Stats struct {
	Sent      int64 // state frames written on the channel
	Dropped   int64 // frames taken but dropped: the channel went, or its write failed, meanwhile
	Congested int64 // frames refused because the buffered amount was over MaxBuffered
}

// Stats returns the peer's counters.
func (p *Peer) Stats() Stats {
	return Stats{Sent: p.sent.Load(), Dropped: p.dropped.Load(), Congested: p.congested.Load()}
}

// Close closes the connection and ends the writer, waiting for both. It is
// safe to call twice.
func (p *Peer) Close() {
	p.once.Do(func() {
		close(p.done)
		<-p.stopped
		p.sig.Lock()
		c := p.cur.Swap(nil)
		p.pending = nil
		p.sig.Unlock()
		if c != nil {
			c.close()
		}
		p.s.untrack(p)
	})
}
