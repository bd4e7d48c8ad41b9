package bench

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/internal/rtc"
	"github.com/tickwire/tickwire/wire"
)

// rtcAPI returns the Pion API of bots taking state over WebRTC from the
// server at serverURL: ICE on loopback when the server is, else over UDP
// on IPv4 without mDNS; no ICE servers (the bench runs on a LAN).
func rtcAPI(serverURL string) *webrtc.API {
	var se webrtc.SettingEngine
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if u, err := url.Parse(serverURL); err == nil {
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			rtc.Loopback(&se)
		}
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{}))
}

// rtcLink is a bot's state channel.
type rtcLink struct {
	pc   *webrtc.PeerConnection
	dc   *webrtc.DataChannel
	open atomic.Bool
	// counter counts the channel's payload bytes with the WebSocket's
	// (not the UDP, DTLS and SCTP headers around them).
	counter *Counter

	mu        sync.Mutex // guards the fields below
	offered   bool
	queued    []*wire.ICECandidate
	remoteSet bool
	pending   []webrtc.ICECandidateInit
}

// offer opens the bot's state channel: every message on it goes to
// onFrame with its arrival time. Frames from the WebSocket that belong to
// the signaling go to link.signal.
func (b *bot) offer(api *webrtc.API, counter *Counter, onFrame func(at time.Time, f []byte)) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	ordered, retransmits := false, uint16(0)
	dc, err := pc.CreateDataChannel(wire.StateChannelLabel, &webrtc.DataChannelInit{Ordered: &ordered, MaxRetransmits: &retransmits})
	if err != nil {
		_ = pc.Close()
		return err
	}
	l := &rtcLink{pc: pc, dc: dc, counter: counter}
	dc.OnOpen(func() { l.open.Store(true) })
	dc.OnClose(func() { l.open.Store(false) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		l.counter.In.Add(int64(len(m.Data)))
		onFrame(time.Now(), m.Data)
	})
	pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		cand := rtc.WireCandidate(ic)
		l.mu.Lock()
		defer l.mu.Unlock()
		if !l.offered {
			l.queued = append(l.queued, cand)
			return
		}
		_ = b.write(wire.MustEncode(&wire.RTCICE{Candidate: cand}))
	})
	o, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(o)
	}
	if err != nil {
		_ = pc.Close()
		return err
	}
	b.wmu.Lock()
	b.rtc = l
	b.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := b.write(wire.MustEncode(&wire.RTCOffer{SDP: pc.LocalDescription().SDP})); err != nil {
		return err
	}
	l.offered = true
	for _, c := range l.queued {
		_ = b.write(wire.MustEncode(&wire.RTCICE{Candidate: c}))
	}
	l.queued = nil
	return nil
}

// write sends one frame on the bot's WebSocket.
func (b *bot) write(frame []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	return b.ws.WriteMessage(websocket.BinaryMessage, frame)
}

// signal handles a frame of the WebSocket that belongs to the channel's
// signaling (the answer, candidates) and reports whether it was one.
func (l *rtcLink) signal(f []byte) bool {
	h, err := player.Head(f)
	if err != nil || h.T != wire.TypeRTCAnswer && h.T != wire.TypeRTCICE {
		return false
	}
	m, err := wire.DecodeServer(f)
	if err != nil {
		return true
	}
	switch m := m.(type) {
	case *wire.RTCAnswer:
		if l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}) != nil {
			return true
		}
		l.mu.Lock()
		l.remoteSet = true
		pending := l.pending
		l.pending = nil
		l.mu.Unlock()
		for _, c := range pending {
			_ = l.pc.AddICECandidate(c)
		}
	case *wire.RTCICE:
		if m.Candidate == nil {
			return true
		}
		c := rtc.PionCandidate(m.Candidate)
		l.mu.Lock()
		if !l.remoteSet {
			l.pending = append(l.pending, c)
			l.mu.Unlock()
			return true
		}
		l.mu.Unlock()
		_ = l.pc.AddICECandidate(c)
	}
	return true
}

// send sends an input on the channel when it is open; the caller holds
// the bot's wmu.
func (l *rtcLink) send(frame []byte) bool {
	if l == nil || !l.open.Load() || l.dc.Send(frame) != nil {
		return false
	}
	l.counter.Out.Add(int64(len(frame)))
	return true
}

// close closes the channel and waits for its callbacks to end.
func (l *rtcLink) close() {
	if l != nil {
		_ = l.pc.GracefulClose()
	}
}
