package bench

import (
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/internal/rtc"
	"github.com/tickwire/tickwire/wire"
)

// rtcAPI returns the Pion API of bots taking state over WebRTC from the
// server at serverURL: ICE on loopback when the server is, else over UDP
// on IPv4 without mDNS; no ICE servers (the bench runs on a LAN).
func rtcAPI(serverURL string) *webrtc.API {
	se := rtc.ClientSettings()
	if u, err := url.Parse(serverURL); err == nil {
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			rtc.Loopback(&se)
		}
	}
	return rtc.DataAPI(se)
}

// rtcLink is a bot's state channel.
type rtcLink struct {
	*rtc.Offerer
	open atomic.Bool
	// stateOnly keeps the bot's inputs off the channel (on its WebSocket).
	stateOnly bool
	inputs    atomic.Int64 // inputs sent on the channel
	// counter counts the channel's payload bytes with the WebSocket's
	// (not the UDP, DTLS and SCTP headers around them).
	counter *Counter
}

// offer opens the bot's state channel: every message on it goes to
// onFrame with its arrival time; with stateOnly, the bot's inputs stay on
// its WebSocket. Frames from the WebSocket that belong to the signaling go
// to link.signal.
func (b *bot) offer(api *webrtc.API, counter *Counter, stateOnly bool, onFrame func(at time.Time, f []byte)) error {
	o, err := rtc.NewOfferer(api, webrtc.Configuration{}, func(m wire.ClientMessage) error {
		return b.write(wire.MustEncode(m))
	})
	if err != nil {
		return err
	}
	l := &rtcLink{Offerer: o, counter: counter, stateOnly: stateOnly}
	o.DC.OnOpen(func() { l.open.Store(true) })
	o.DC.OnClose(func() { l.open.Store(false) })
	o.DC.OnMessage(func(m webrtc.DataChannelMessage) {
		l.counter.In.Add(int64(len(m.Data)))
		onFrame(time.Now(), m.Data)
	})
	b.rtc.Store(l)
	return o.Send()
}

// write sends one frame on the bot's WebSocket.
func (b *bot) write(frame []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// signal handles a frame f of the WebSocket with head h (see frameHead)
// that belongs to the channel's signaling (the answer, candidates) and
// reports whether it was one.
func (l *rtcLink) signal(h player.FrameHead, f []byte) bool {
	if h.T != wire.TypeRTCAnswer && h.T != wire.TypeRTCICE {
		return false
	}
	m, err := wire.DecodeServer(f)
	if err != nil {
		return true
	}
	switch m := m.(type) {
	case *wire.RTCAnswer:
		_ = l.Answer(m.SDP)
	case *wire.RTCICE:
		l.Candidate(m.Candidate)
	}
	return true
}

// send sends an input on the channel when it is open and takes inputs;
// the caller holds the bot's wmu.
func (l *rtcLink) send(frame []byte) bool {
	if l == nil || l.stateOnly || !l.open.Load() || l.DC.Send(frame) != nil {
		return false
	}
	l.counter.Out.Add(int64(len(frame)))
	l.inputs.Add(1)
	return true
}

// close closes the channel and waits for its callbacks to end.
func (l *rtcLink) close() {
	if l != nil {
		_ = l.PC.GracefulClose()
	}
}
