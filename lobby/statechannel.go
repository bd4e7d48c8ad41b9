package lobby

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/wire"
)

// StateChannel is a player's state channel (contract 1.1, "State over
// WebRTC"): a WebRTC DataChannel that carries the player's state frames
// while it is usable. internal/rtc implements it; its methods are safe for
// concurrent use.
type StateChannel interface {
	// Offer takes the client's SDP offer, replacing any earlier one, and
	// sends the answer and the local candidates through
	// StateChannelConfig.Signal. An error with a BadMessage() bool method
	// reporting true is the client's fault.
	Offer(sdp string) error
	// AddCandidate adds one of the client's candidates; nil ends them. An
	// error is answered as Offer's is.
	AddCandidate(c *wire.ICECandidate) error
	// SendState sends shared followed by tail on the channel and reports
	// true, or reports false when the frame must go on the WebSocket. It
	// never blocks and keeps neither slice.
	SendState(shared, tail []byte) bool
	// Close closes the channel and waits for its goroutines.
	Close()
}

// StateChannelConfig connects a StateChannel to its session.
type StateChannelConfig struct {
	// Signal sends `rtc-answer` and `rtc-ice` to the player's WebSocket.
	Signal func(m wire.ServerMessage)
	// Receive is given every message arriving on the channel.
	Receive func(msg []byte)
}

// playerConn is the connection the room sees: the WebSocket, asking for
// delta frames when the `join` did (caps ["delta"]), with state frames
// diverted to the player's state channel while that is usable.
type playerConn struct {
	PlayerConn
	delta bool
	ch    atomic.Pointer[stateChannel]
}

// stateChannel boxes a StateChannel for an atomic pointer.
type stateChannel struct{ StateChannel }

// WantsDelta implements room.DeltaClient.
func (c *playerConn) WantsDelta() bool { return c.delta }

// SendState implements room.Client: the frame goes on the state channel
// when it takes it, else on the WebSocket.
func (c *playerConn) SendState(shared, tail []byte) {
	if ch := c.ch.Load(); ch != nil && ch.SendState(shared, tail) {
		return
	}
	c.PlayerConn.SendState(shared, tail)
}

var _ room.DeltaClient = (*playerConn)(nil)

// rtcState is a session's state channel, made at its first offer.
type rtcState struct {
	mu    sync.Mutex // guards dec; messages of the channel are decoded one at a time
	dec   wire.ClientDecoder
	limit *rate.Limiter // messages on the channel; beyond it they are dropped
}

// offer handles `rtc-offer`: it opens the session's state channel on the
// first one, then hands the offer over. It reports whether the session goes
// on.
func (s *session) offer(sdp string) bool {
	if s.l.cfg.StateChannels == nil {
		return s.conn.Reply(wire.MustEncode(&wire.Error{Code: wire.CodeUnsupported,
			Msg: "this server does not take state over WebRTC; state stays on the WebSocket"})) == nil
	}
	pc := s.pconn
	ch := pc.ch.Load()
	if ch == nil {
		s.rtc = &rtcState{limit: rate.NewLimiter(rate.Limit(4*s.l.cfg.Hz), 8*s.l.cfg.Hz)}
		s.rtc.dec.SetInputs(s.seat.Inputs())
		sc := s.l.cfg.StateChannels(StateChannelConfig{
			Signal:  func(m wire.ServerMessage) { _ = s.conn.Send(wire.MustEncode(m)) },
			Receive: s.fromChannel,
		})
		if sc == nil {
			return s.conn.Reply(wire.MustEncode(&wire.Error{Code: wire.CodeUnsupported,
				Msg: "state over WebRTC is not available now; state stays on the WebSocket"})) == nil
		}
		ch = &stateChannel{sc}
		pc.ch.Store(ch)
	}
	return s.rtcReply(ch.Offer(sdp))
}

// candidate handles `rtc-ice`.
func (s *session) candidate(c *wire.ICECandidate) bool {
	ch := s.pconn.ch.Load()
	if ch == nil {
		// No offer taken (yet): nothing to add it to. Without state
		// channels the offer got `unsupported` already.
		return true
	}
	return s.rtcReply(ch.AddCandidate(c))
}

// rtcReply answers an error of the state channel: the client's fault is
// `bad-message`, anything else `unsupported`; the session goes on.
func (s *session) rtcReply(err error) bool {
	if err == nil {
		return true
	}
	code := wire.CodeUnsupported
	var bad interface{ BadMessage() bool }
	if errors.As(err, &bad) && bad.BadMessage() {
		code = wire.CodeBadMessage
	} else {
		s.l.cfg.Logger.Warn("state channel", "err", err)
	}
	return s.conn.Reply(wire.MustEncode(&wire.Error{Code: code, Msg: err.Error()})) == nil
}

// fromChannel handles a message that arrived on the state channel: an
// `input` (applied when its seq is above the last applied, as on the
// WebSocket) or an `ack`. Anything else, and anything beyond the channel's
// rate, is dropped silently: the channel is unreliable anyway.
func (s *session) fromChannel(frame []byte) {
	r := s.rtc
	if !r.limit.Allow() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	msg, err := r.dec.Decode(frame)
	if err != nil {
		return
	}
	switch m := msg.(type) {
	case *wire.Input:
		if s.seat.Input(m) == nil && m.N > 0 {
			s.seat.AckSnapshot(s.conn, m.N)
		}
	case *wire.Ack:
		s.seat.AckSnapshot(s.conn, m.N)
	}
}

// closeChannel closes the session's state channel, if any.
func (s *session) closeChannel() {
	if s.pconn == nil {
		return
	}
	if ch := s.pconn.ch.Swap(nil); ch != nil {
		ch.Close()
	}
}
