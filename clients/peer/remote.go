package peer

import (
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/wire"
)

// maxPendingCandidates bounds the remote candidates held while no remote
// description is set.
const maxPendingCandidates = 256

// remote is the connection to one other peer of the call.
type remote struct {
	id     string
	polite bool      // this peer gives way in a glare
	start  time.Time // first contact

	// Guarded by Peer.mu; pc is written only by the signaling reader, which
	// may read it without the lock.
	name       string
	pc         *webrtc.PeerConnection // current connection, nil before the first and after leaving
	dc         *webrtc.DataChannel    // open channel on pc, nil until open
	state      webrtc.PeerConnectionState
	connect    time.Duration     // time to connected, 0 until then
	open       time.Duration     // time to DataChannel open, 0 until then
	sentLocal  bool              // pc's local description has been sent, so its candidates may follow
	localCands []json.RawMessage // pc's candidates gathered before that

	// Used by the signaling reader only.
	api         *webrtc.API
	remoteCands []webrtc.ICECandidateInit // held until pc has a remote description
	ignoring    bool                      // impolite: an offer that collided was ignored, and so are its candidates
	left        bool                      // the server said the peer left

	msgsIn, msgsOut, echoes, rtpIn, rtpOut atomic.Uint64
}

func (r *remote) statsLocked() RemoteStats {
	return RemoteStats{
		ID: r.id, Name: r.name, State: r.state.String(), Connect: r.connect, Open: r.open,
		MessagesIn: r.msgsIn.Load(), MessagesOut: r.msgsOut.Load(), Echoes: r.echoes.Load(),
		RTPIn: r.rtpIn.Load(), RTPOut: r.rtpOut.Load(),
	}
}

// send sends data as a binary message on dc and counts it.
func (r *remote) send(dc *webrtc.DataChannel, data []byte) bool {
	if dc.Send(data) != nil {
		return false
	}
	r.msgsOut.Add(1)
	return true
}

// offer makes r a fresh PeerConnection with a DataChannel and sends its
// offer. Signaling reader only.
func (p *Peer) offer(r *remote) {
	if r.left {
		return
	}
	pc, err := p.newPC(r, true)
	if err == nil {
		err = p.describe(r, pc, webrtc.SDPTypeOffer)
	}
	if err != nil {
		p.cfg.Logf("peer %s: offer to %s: %v", p.id, r.id, err)
		p.replacePC(r, nil)
	}
}

// onOffer answers an offer, resolving glare first: the impolite side
// ignores the colliding offer, the polite side drops its own
// PeerConnection and answers on a fresh one. Signaling reader only.
func (p *Peer) onOffer(r *remote, sdp string) {
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}
	if _, err := offer.Unmarshal(); err != nil || r.left {
		return // garbage does not disturb a connection that works
	}
	if r.pc != nil && r.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		p.mu.Lock()
		p.glares++
		if r.polite {
			p.restarts++
		}
		p.mu.Unlock()
		if !r.polite {
			r.ignoring = true
			return
		}
		p.replacePC(r, nil)
	}
	r.ignoring = false
	if r.pc != nil && r.pc.ConnectionState() == webrtc.PeerConnectionStateFailed {
		p.replacePC(r, nil) // a new offer after a failure starts afresh
	}
	pc := r.pc
	var err error
	if pc == nil {
		pc, err = p.newPC(r, false)
	}
	if err == nil {
		err = pc.SetRemoteDescription(offer)
	}
	if err == nil {
		p.addRemoteCandidates(r, pc)
		err = p.describe(r, pc, webrtc.SDPTypeAnswer)
	}
	if err != nil {
		p.cfg.Logf("peer %s: answer to %s: %v", p.id, r.id, err)
		p.replacePC(r, nil)
	}
}

// onAnswer applies the answer to this peer's pending offer; any other
// answer is stale and ignored. Signaling reader only.
func (p *Peer) onAnswer(r *remote, sdp string) {
	if r.pc == nil || r.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return
	}
	if err := r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		p.cfg.Logf("peer %s: answer from %s: %v", p.id, r.id, err)
		return
	}
	r.ignoring = false
	p.addRemoteCandidates(r, r.pc)
}

// onCandidate adds a remote candidate, or holds it until the remote
// description is set. Signaling reader only.
func (p *Peer) onCandidate(r *remote, raw json.RawMessage) {
	if r.ignoring || len(raw) == 0 || string(raw) == "null" {
		return
	}
	var c webrtc.ICECandidateInit
	if err := json.Unmarshal(raw, &c); err != nil || c.Candidate == "" {
		return
	}
	if r.pc == nil || r.pc.RemoteDescription() == nil {
		if len(r.remoteCands) < maxPendingCandidates {
			r.remoteCands = append(r.remoteCands, c)
		}
		return
	}
	if err := r.pc.AddICECandidate(c); err != nil {
		p.cfg.Logf("peer %s: candidate from %s: %v", p.id, r.id, err)
	}
}

func (p *Peer) addRemoteCandidates(r *remote, pc *webrtc.PeerConnection) {
	for _, c := range r.remoteCands {
		if err := pc.AddICECandidate(c); err != nil {
			p.cfg.Logf("peer %s: candidate from %s: %v", p.id, r.id, err)
		}
	}
	r.remoteCands = nil
}

// describe creates an offer or answer on pc, sets it as the local
// description and sends it, followed by the candidates gathered so far.
func (p *Peer) describe(r *remote, pc *webrtc.PeerConnection, typ webrtc.SDPType) error {
	var desc webrtc.SessionDescription
	var err error
	if typ == webrtc.SDPTypeOffer {
		desc, err = pc.CreateOffer(nil)
	} else {
		desc, err = pc.CreateAnswer(nil)
	}
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(desc); err != nil {
		return err
	}
	if typ == webrtc.SDPTypeOffer && p.cfg.beforeOffer != nil {
		p.cfg.beforeOffer(r.id)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.pc != pc {
		return nil
	}
	if err := p.write(wire.SignalMessage{Type: typ.String(), To: r.id, SDP: desc.SDP}); err != nil {
		return err
	}
	r.sentLocal = true
	for _, c := range r.localCands {
		_ = p.write(wire.SignalMessage{Type: wire.SignalTypeICECandidate, To: r.id, Candidate: c})
	}
	r.localCands = nil
	return nil
}

// newPC creates a PeerConnection to r with the audio track, makes it r's
// current one, and with offerer set opens the DataChannel on it.
// Signaling reader only.
func (p *Peer) newPC(r *remote, offerer bool) (*webrtc.PeerConnection, error) {
	if r.api == nil {
		var err error
		if r.api, err = newAPI(p.cfg, &r.rtpOut); err != nil {
			return nil, err
		}
	}
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{ICEServers: p.ice})
	if err != nil {
		return nil, err
	}
	p.replacePC(r, pc)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) { p.localCandidate(r, pc, c) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) { p.stateChange(r, pc, s) })
	pc.OnDataChannel(func(dc *webrtc.DataChannel) { p.watchChannel(r, pc, dc) })
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.readTrack(r, t) })
	if p.track != nil {
		if _, err := pc.AddTrack(p.track); err != nil {
			return nil, err
		}
	}
	if offerer {
		dc, err := pc.CreateDataChannel("tickwire", nil)
		if err != nil {
			return nil, err
		}
		p.watchChannel(r, pc, dc)
	}
	return pc, nil
}

// replacePC makes pc (which may be nil) r's current PeerConnection and
// closes the previous one; callbacks of the old one are ignored from then on.
func (p *Peer) replacePC(r *remote, pc *webrtc.PeerConnection) {
	p.mu.Lock()
	old := r.pc
	r.pc, r.dc, r.sentLocal, r.localCands = pc, nil, false, nil
	if pc == nil {
		r.state = webrtc.PeerConnectionStateClosed
	}
	p.notifyLocked()
	p.mu.Unlock()
	if old != nil {
		_ = old.GracefulClose()
	}
}

// localCandidate sends a gathered candidate (nil: end of candidates) once
// pc's description has gone out.
func (p *Peer) localCandidate(r *remote, pc *webrtc.PeerConnection, c *webrtc.ICECandidate) {
	raw := json.RawMessage("null")
	if c != nil {
		raw, _ = json.Marshal(c.ToJSON())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case r.pc != pc:
	case !r.sentLocal:
		r.localCands = append(r.localCands, raw)
	default:
		_ = p.write(wire.SignalMessage{Type: wire.SignalTypeICECandidate, To: r.id, Candidate: raw})
	}
}

func (p *Peer) stateChange(r *remote, pc *webrtc.PeerConnection, s webrtc.PeerConnectionState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.pc != pc {
		return
	}
	r.state = s
	if s == webrtc.PeerConnectionStateConnected && r.connect == 0 {
		r.connect = time.Since(r.start)
	}
	p.notifyLocked()
}

// watchChannel makes dc r's channel once open, and echoes what arrives.
func (p *Peer) watchChannel(r *remote, pc *webrtc.PeerConnection, dc *webrtc.DataChannel) {
	dc.OnOpen(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if r.pc != pc {
			return
		}
		r.dc = dc
		if r.open == 0 {
			r.open = time.Since(r.start)
		}
		p.notifyLocked()
	})
	dc.OnClose(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if r.dc == dc {
			r.dc = nil
			p.notifyLocked()
		}
	})
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.onMessage(r, dc, msg) })
}

// readTrack counts the RTP packets of a remote track until its connection
// closes.
func (p *Peer) readTrack(r *remote, t *webrtc.TrackRemote) {
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if closed {
		return
	}
	go func() {
		defer p.wg.Done()
		for {
			if _, _, err := t.ReadRTP(); err != nil {
				return
			}
			r.rtpIn.Add(1)
		}
	}()
}
