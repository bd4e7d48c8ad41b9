package rtc

import (
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/wire"
)

// WireCandidate is Pion's local candidate ic as an `rtc-ice` carries it;
// nil (the end of the candidates) stays nil. The server and the Go
// clients use it.
func WireCandidate(ic *webrtc.ICECandidate) *wire.ICECandidate {
	if ic == nil {
		return nil
	}
	init := ic.ToJSON()
	return &wire.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid,
		SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
}

// PionCandidate is a candidate received in an `rtc-ice` as Pion takes it.
func PionCandidate(c *wire.ICECandidate) webrtc.ICECandidateInit {
	return webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid,
		SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
}

// ICEServers converts ICE servers as /api/ice and the signaling `welcome`
// list them to Pion's type.
func ICEServers(in []wire.SignalICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}
