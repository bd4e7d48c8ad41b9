package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Types of the signaling WebSocket's JSON messages (the `type` key).
const (
	// Client to server.
	SignalTypeJoin  = "join"
	SignalTypeLeave = "leave"
	// Both directions: sent with `to`, relayed with `from`.
	SignalTypeOffer        = "offer"
	SignalTypeAnswer       = "answer"
	SignalTypeICECandidate = "ice-candidate"
	// Server to client.
	SignalTypeWelcome    = "welcome"
	SignalTypePeerJoined = "peer-joined"
	SignalTypePeerLeft   = "peer-left"
	SignalTypeError      = "error"
)

// Error codes carried by the signaling `error` message.
const (
	SignalErrBadMessage   = "bad-message"
	SignalErrUnauthorized = "unauthorized"
	SignalErrUnknownPeer  = "unknown-peer"
	SignalErrCallFull     = "call-full"
	SignalErrTooBig       = "too-big"
	SignalErrRateLimited  = "rate-limited"
)

// WebSocket close codes of the signaling protocol.
const (
	SignalCloseNormal       = 1000 // after `leave`
	SignalCloseGoingAway    = 1001 // the server is shutting down
	SignalCloseTooBig       = 1009 // a frame over the frame limit
	SignalCloseBadMessage   = 4000 // not JSON, or not a valid `join` first
	SignalCloseUnauthorized = 4001 // bad token, or no `join` in time
	SignalCloseCallFull     = 4009 // the call has no room for another peer
)

// Default limits of the signaling protocol.
const (
	SignalMaxSDP      = 64 << 10 // bytes of one `sdp` field
	SignalMaxFrame    = 72 << 10 // bytes of one WebSocket frame
	SignalMaxPeers    = 16       // peers in one call
	SignalRelayRate   = 50       // relayed messages per second and peer
	SignalRelayBurst  = 200      // burst of relayed messages per peer
	SignalMaxTokenLen = 4096     // bytes of a `join.token`
)

// Sentinel errors of DecodeSignal, wrapped with details; test with errors.Is.
var (
	// ErrSignalSyntax: the bytes are not one JSON object. The server answers
	// bad-message and closes with SignalCloseBadMessage.
	ErrSignalSyntax = errors.New("wire: signal is not a JSON object")
	// ErrSignalUnknownType: a JSON object whose `type` is not a client
	// message type.
	ErrSignalUnknownType = errors.New("wire: unknown signal type")
	// ErrSignalInvalid: a known type with a missing field, or a field of the
	// wrong type or out of range.
	ErrSignalInvalid = errors.New("wire: invalid signal field")
)

// SignalMessage is any message of the signaling WebSocket, in either
// direction; Type says which fields are meaningful. Empty fields are left
// out when encoding, except that a non-nil empty Peers or ICEServers is
// written as [] (welcome always carries both lists).
type SignalMessage struct {
	Type string `json:"type"`

	// join (client); welcome (server) carries Call too.
	Call  string `json:"call,omitempty"`
	Name  string `json:"name,omitempty"`
	Token string `json:"token,omitempty"`

	// offer, answer, ice-candidate. From is set by the server only.
	To   string `json:"to,omitempty"`
	From string `json:"from,omitempty"`
	SDP  string `json:"sdp,omitempty"`
	// Candidate is the RTCIceCandidateInit object as JSON (see
	// SignalCandidate), or the literal null for end of candidates. It is
	// kept raw so that the server relays it as sent.
	Candidate json.RawMessage `json:"candidate,omitzero"`

	// welcome (this peer's id), peer-joined, peer-left.
	ID         string            `json:"id,omitempty"`
	Peers      []SignalPeer      `json:"peers,omitzero"`
	ICEServers []SignalICEServer `json:"iceServers,omitzero"`

	// error.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// SignalPeer is one entry of welcome.peers.
type SignalPeer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// SignalICEServer is one STUN or TURN server in the browser's RTCIceServer
// shape.
type SignalICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// SignalICEResponse is the body of GET /api/ice.
type SignalICEResponse struct {
	ICEServers []SignalICEServer `json:"iceServers"`
	TTL        int64             `json:"ttl"` // lifetime of the credentials, seconds
}

// SignalCandidate is the RTCIceCandidateInit shape of
// SignalMessage.Candidate.
type SignalCandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// SignalError returns an `error` message with the given code and text.
func SignalError(code, message string) SignalMessage {
	return SignalMessage{Type: SignalTypeError, Code: code, Message: message}
}

// DecodeSignal decodes and validates one message a client sent to the
// server. Fields that do not belong to the message's type are cleared, so a
// client-written `from` never survives. It does not check the SDP size
// limit, which is the server's to configure. Errors wrap ErrSignalSyntax,
// ErrSignalUnknownType or ErrSignalInvalid.
func DecodeSignal(data []byte) (SignalMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || !json.Valid(data) {
		return SignalMessage{}, ErrSignalSyntax
	}
	var m SignalMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return SignalMessage{}, fmt.Errorf("%w: %v", ErrSignalInvalid, err)
	}
	switch m.Type {
	case SignalTypeJoin:
		m = SignalMessage{Type: m.Type, Call: m.Call, Name: m.Name, Token: m.Token}
		if !ValidID(m.Call) {
			return m, fmt.Errorf("%w: call must be 1-%d characters of [A-Za-z0-9_-]", ErrSignalInvalid, MaxIDLen)
		}
		if !sigValidName(m.Name) {
			return m, fmt.Errorf("%w: name must be 1-%d printable characters", ErrSignalInvalid, MaxNameLen)
		}
		if len(m.Token) > SignalMaxTokenLen {
			return m, fmt.Errorf("%w: token over %d bytes", ErrSignalInvalid, SignalMaxTokenLen)
		}
	case SignalTypeOffer, SignalTypeAnswer:
		m = SignalMessage{Type: m.Type, To: m.To, SDP: m.SDP}
		if !ValidID(m.To) {
			return m, fmt.Errorf("%w: bad `to`", ErrSignalInvalid)
		}
		if m.SDP == "" {
			return m, fmt.Errorf("%w: empty sdp", ErrSignalInvalid)
		}
	case SignalTypeICECandidate:
		m = SignalMessage{Type: m.Type, To: m.To, Candidate: m.Candidate}
		if !ValidID(m.To) {
			return m, fmt.Errorf("%w: bad `to`", ErrSignalInvalid)
		}
		if err := validCandidate(m.Candidate); err != nil {
			return m, err
		}
	case SignalTypeLeave:
		m = SignalMessage{Type: m.Type}
	default:
		return SignalMessage{}, fmt.Errorf("%w: %q", ErrSignalUnknownType, m.Type)
	}
	return m, nil
}

// validCandidate accepts null or an object of the SignalCandidate shape.
func validCandidate(raw json.RawMessage) error {
	switch {
	case raw == nil:
		return fmt.Errorf("%w: missing candidate", ErrSignalInvalid)
	case string(raw) == "null":
		return nil
	case raw[0] != '{':
		return fmt.Errorf("%w: candidate must be an object or null", ErrSignalInvalid)
	}
	var c SignalCandidate
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("%w: candidate: %v", ErrSignalInvalid, err)
	}
	return nil
}

// sigValidName reports whether s is a signaling peer name: valid UTF-8 of 1-24
// characters (runes), none of them control characters.
func sigValidName(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxNameLen {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
