package wire

import (
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Messages of the player WebSocket that set up a WebRTC DataChannel for
// state frames (contract 1.1, "State over WebRTC").
const (
	TypeRTCOffer  = "rtc-offer"  // client: an offer with a `state` DataChannel
	TypeRTCAnswer = "rtc-answer" // server: the answer
	TypeRTCICE    = "rtc-ice"    // both: a trickled ICE candidate, or null at the end
)

// StateChannelLabel is the label of the DataChannel that carries state
// frames; it is unordered and never retransmits (maxRetransmits 0).
const StateChannelLabel = "state"

// RTCOffer is a client's SDP offer for a state channel.
type RTCOffer struct {
	Head
	SDP string `msgpack:"sdp"`
}

// RTCAnswer is the server's SDP answer to an RTCOffer.
type RTCAnswer struct {
	Head
	SDP string `msgpack:"sdp"`
}

// ICECandidate is a trickled ICE candidate in the browser's
// RTCIceCandidateInit shape; the optional fields are nil when absent.
type ICECandidate struct {
	Candidate        string  `msgpack:"candidate" json:"candidate"`
	SDPMid           *string `msgpack:"sdpMid,omitempty" json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `msgpack:"sdpMLineIndex,omitempty" json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `msgpack:"usernameFragment,omitempty" json:"usernameFragment,omitempty"`
}

// RTCICE carries one ICE candidate, either way; a nil Candidate (null on
// the wire) ends the sender's candidates.
type RTCICE struct {
	Head
	Candidate *ICECandidate `msgpack:"candidate"`
}

// Type returns TypeRTCOffer.
func (*RTCOffer) Type() string { return TypeRTCOffer }

// Type returns TypeRTCAnswer.
func (*RTCAnswer) Type() string { return TypeRTCAnswer }

// Type returns TypeRTCICE.
func (*RTCICE) Type() string { return TypeRTCICE }

func (*RTCOffer) fromClient()  {}
func (*RTCICE) fromClient()    {}
func (*RTCAnswer) fromServer() {}
func (*RTCICE) fromServer()    {}

// looseCandidate reads a candidate whose numbers may be ints or floats and
// whose optional fields may be null.
type looseCandidate struct {
	Candidate        *string  `msgpack:"candidate"`
	SDPMid           *string  `msgpack:"sdpMid"`
	SDPMLineIndex    *float64 `msgpack:"sdpMLineIndex"`
	UsernameFragment *string  `msgpack:"usernameFragment"`
}

// decodeCandidate decodes the msgpack value of an `rtc-ice` candidate (a
// map; null was handled by the caller).
func decodeCandidate(raw []byte) (*ICECandidate, error) {
	var lc looseCandidate
	if err := msgpack.Unmarshal(raw, &lc); err != nil {
		return nil, fmt.Errorf("must be an RTCIceCandidateInit object or null")
	}
	if lc.Candidate == nil {
		return nil, fmt.Errorf("candidate.candidate must be a string")
	}
	c := &ICECandidate{Candidate: *lc.Candidate, SDPMid: lc.SDPMid, UsernameFragment: lc.UsernameFragment}
	if v := lc.SDPMLineIndex; v != nil {
		if *v < 0 || *v > math.MaxUint16 || *v != math.Trunc(*v) {
			return nil, fmt.Errorf("candidate.sdpMLineIndex must be an integer in 0..65535")
		}
		i := uint16(*v)
		c.SDPMLineIndex = &i
	}
	return c, nil
}
