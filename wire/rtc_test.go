package wire

import (
	"errors"
	"testing"
)

func TestDecodeClientRTCMessages(t *testing.T) {
	m, err := DecodeClient(mustMarshal(t, map[string]any{"t": "rtc-offer", "sdp": "v=0\r\n"}))
	if o, ok := m.(*RTCOffer); err != nil || !ok || o.SDP != "v=0\r\n" {
		t.Fatalf("offer: %+v, %v", m, err)
	}
	m, err = DecodeClient(mustMarshal(t, map[string]any{"t": "rtc-ice", "candidate": nil}))
	if c, ok := m.(*RTCICE); err != nil || !ok || c.Candidate != nil {
		t.Fatalf("null candidate: %+v, %v", m, err)
	}
	m, err = DecodeClient(mustMarshal(t, map[string]any{"t": "rtc-ice", "candidate": map[string]any{
		"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0.0, "usernameFragment": nil,
	}}))
	c, ok := m.(*RTCICE)
	if err != nil || !ok || c.Candidate == nil || c.Candidate.SDPMid == nil || *c.Candidate.SDPMid != "0" ||
		c.Candidate.SDPMLineIndex == nil || *c.Candidate.SDPMLineIndex != 0 || c.Candidate.UsernameFragment != nil {
		t.Fatalf("candidate: %+v, %v", m, err)
	}
	for _, bad := range []map[string]any{
		{"t": "rtc-offer"},
		{"t": "rtc-offer", "sdp": ""},
		{"t": "rtc-offer", "sdp": 5},
		{"t": "rtc-ice"},
		{"t": "rtc-ice", "candidate": "x"},
		{"t": "rtc-ice", "candidate": map[string]any{"sdpMid": "0"}},
		{"t": "rtc-ice", "candidate": map[string]any{"candidate": "c", "sdpMLineIndex": 1.5}},
	} {
		var fe *FieldError
		if _, err := DecodeClient(mustMarshal(t, bad)); !errors.As(err, &fe) {
			t.Errorf("%v: %v, want a field error", bad, err)
		}
	}
}

func TestRTCServerMessagesRoundTrip(t *testing.T) {
	mid, idx := "0", uint16(0)
	for _, in := range []ServerMessage{
		&RTCAnswer{SDP: "v=0\r\n"},
		&RTCICE{},
		&RTCICE{Candidate: &ICECandidate{Candidate: "candidate:1", SDPMid: &mid, SDPMLineIndex: &idx}},
	} {
		m, err := DecodeServer(MustEncode(in))
		if err != nil || m.Type() != in.Type() {
			t.Fatalf("%+v: %+v, %v", in, m, err)
		}
	}
	m, _ := DecodeServer(MustEncode(&RTCICE{Candidate: &ICECandidate{Candidate: "c", SDPMid: &mid, SDPMLineIndex: &idx}}))
	if c := m.(*RTCICE).Candidate; c == nil || c.Candidate != "c" || *c.SDPMid != "0" || *c.SDPMLineIndex != 0 {
		t.Fatalf("decoded %+v", c)
	}
}
