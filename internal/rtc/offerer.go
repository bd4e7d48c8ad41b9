package rtc

import (
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/wire"
)

// Offerer is a client's side of one state channel offer: a peer connection
// with the `state` channel (unordered, never retransmitted), whose own
// candidates wait until the offer has gone and whose server candidates wait
// until the answer is set. The Go player client and the bench bots use it;
// they install the channel's callbacks themselves.
type Offerer struct {
	PC *webrtc.PeerConnection
	DC *webrtc.DataChannel

	send func(wire.ClientMessage) error

	mu       sync.Mutex // serializes what goes to send, and guards the fields below
	offered  bool       // the offer has been sent: candidates may follow
	queued   []*wire.ICECandidate
	answered bool                      // the answer is set
	pending  []webrtc.ICECandidateInit // the server's candidates before its answer
}

// NewOfferer makes the peer connection and its state channel, and sets the
// local description of an offer; Send sends that offer. send writes the
// offer and the local candidates to the player's WebSocket.
func NewOfferer(api *webrtc.API, cfg webrtc.Configuration, send func(wire.ClientMessage) error) (*Offerer, error) {
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, err
	}
	ordered, retransmits := false, uint16(0)
	dc, err := pc.CreateDataChannel(wire.StateChannelLabel, &webrtc.DataChannelInit{Ordered: &ordered, MaxRetransmits: &retransmits})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	o := &Offerer{PC: pc, DC: dc, send: send}
	pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		cand := WireCandidate(ic)
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.offered {
			o.queued = append(o.queued, cand)
			return
		}
		_ = send(&wire.RTCICE{Candidate: cand})
	})
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return o, nil
}

// Send sends the offer, then the candidates gathered so far.
func (o *Offerer) Send() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.send(&wire.RTCOffer{SDP: o.PC.LocalDescription().SDP}); err != nil {
		return err
	}
	o.offered = true
	for _, cand := range o.queued {
		if err := o.send(&wire.RTCICE{Candidate: cand}); err != nil {
			return err
		}
	}
	o.queued = nil
	return nil
}

// Answer sets the server's answer and adds the candidates that came before
// it.
func (o *Offerer) Answer(sdp string) error {
	if err := o.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return err
	}
	o.mu.Lock()
	o.answered = true
	pending := o.pending
	o.pending = nil
	o.mu.Unlock()
	for _, c := range pending {
		_ = o.PC.AddICECandidate(c)
	}
	return nil
}

// Candidate adds one of the server's candidates, kept until the answer is
// set; nil (the end of them) changes nothing.
func (o *Offerer) Candidate(cand *wire.ICECandidate) {
	if cand == nil {
		return
	}
	c := PionCandidate(cand)
	o.mu.Lock()
	if !o.answered {
		o.pending = append(o.pending, c)
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	_ = o.PC.AddICECandidate(c)
}
