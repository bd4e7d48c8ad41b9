package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeSignalValid(t *testing.T) {
	cases := []struct {
		in   string
		want SignalMessage
	}{
		{`{"type":"join","call":"room-1_A","name":"ana"}`,
			SignalMessage{Type: SignalTypeJoin, Call: "room-1_A", Name: "ana"}},
		{`{"type":"join","call":"c","name":"Zoë 🎮","token":"t.k.n","extra":[1,2]}`,
			SignalMessage{Type: SignalTypeJoin, Call: "c", Name: "Zoë 🎮", Token: "t.k.n"}},
		{`{"type":"offer","to":"ab12","sdp":"v=0\r\n","from":"forged"}`,
			SignalMessage{Type: SignalTypeOffer, To: "ab12", SDP: "v=0\r\n"}},
		{` {"type":"answer","to":"x","sdp":"v=0"} `,
			SignalMessage{Type: SignalTypeAnswer, To: "x", SDP: "v=0"}},
		{`{"type":"ice-candidate","to":"x","candidate":null}`,
			SignalMessage{Type: SignalTypeICECandidate, To: "x", Candidate: json.RawMessage("null")}},
		{`{"type":"ice-candidate","to":"x","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}}`,
			SignalMessage{Type: SignalTypeICECandidate, To: "x", Candidate: json.RawMessage(
				`{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}`)}},
		{`{"type":"leave","call":"ignored"}`, SignalMessage{Type: SignalTypeLeave}},
	}
	for _, c := range cases {
		got, err := DecodeSignal([]byte(c.in))
		if err != nil {
			t.Errorf("DecodeSignal(%s): %v", c.in, err)
			continue
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(c.want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("DecodeSignal(%s)\n got %s\nwant %s", c.in, gotJSON, wantJSON)
		}
	}
}

func TestDecodeSignalInvalid(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen+1)
	cases := []struct {
		in   string
		want error
	}{
		{``, ErrSignalSyntax},
		{`hello`, ErrSignalSyntax},
		{`{"type":"join"`, ErrSignalSyntax},
		{`[{"type":"leave"}]`, ErrSignalSyntax},
		{`"join"`, ErrSignalSyntax},
		{`null`, ErrSignalSyntax},
		{`{"type":"leave"} {}`, ErrSignalSyntax},
		{`{}`, ErrSignalUnknownType},
		{`{"type":"welcome","id":"x"}`, ErrSignalUnknownType},
		{`{"type":"JOIN","call":"c","name":"n"}`, ErrSignalUnknownType},
		{`{"type":7}`, ErrSignalInvalid},
		{`{"type":"join","name":"n"}`, ErrSignalInvalid},
		{`{"type":"join","call":"bad id","name":"n"}`, ErrSignalInvalid},
		{`{"type":"join","call":"` + long + `","name":"n"}`, ErrSignalInvalid},
		{`{"type":"join","call":"c","name":""}`, ErrSignalInvalid},
		{`{"type":"join","call":"c","name":"` + strings.Repeat("é", MaxNameLen+1) + `"}`, ErrSignalInvalid},
		{`{"type":"join","call":"c","name":"a\u0000b"}`, ErrSignalInvalid},
		{`{"type":"join","call":"c","name":"n","token":"` + strings.Repeat("t", SignalMaxTokenLen+1) + `"}`, ErrSignalInvalid},
		{`{"type":"join","call":"c","name":42}`, ErrSignalInvalid},
		{`{"type":"offer","sdp":"v=0"}`, ErrSignalInvalid},
		{`{"type":"offer","to":"x"}`, ErrSignalInvalid},
		{`{"type":"answer","to":"x/y","sdp":"v=0"}`, ErrSignalInvalid},
		{`{"type":"ice-candidate","to":"x"}`, ErrSignalInvalid},
		{`{"type":"ice-candidate","to":"x","candidate":"candidate:1"}`, ErrSignalInvalid},
		{`{"type":"ice-candidate","to":"x","candidate":{"candidate":5}}`, ErrSignalInvalid},
		{`{"type":"ice-candidate","to":"x","candidate":{"sdpMLineIndex":-1}}`, ErrSignalInvalid},
	}
	for _, c := range cases {
		_, err := DecodeSignal([]byte(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("DecodeSignal(%.80s) = %v, want %v", c.in, err, c.want)
		}
	}
}

func TestSignalEncodeShapes(t *testing.T) {
	cases := []struct {
		msg  SignalMessage
		want string
	}{
		{SignalMessage{Type: SignalTypeWelcome, ID: "p1", Call: "c", Peers: []SignalPeer{}, ICEServers: []SignalICEServer{}},
			`{"type":"welcome","call":"c","id":"p1","peers":[],"iceServers":[]}`},
		{SignalMessage{Type: SignalTypePeerJoined, ID: "p2", Name: "bo"},
			`{"type":"peer-joined","name":"bo","id":"p2"}`},
		{SignalMessage{Type: SignalTypePeerLeft, ID: "p2"}, `{"type":"peer-left","id":"p2"}`},
		{SignalMessage{Type: SignalTypeICECandidate, From: "p1", Candidate: json.RawMessage("null")},
			`{"type":"ice-candidate","from":"p1","candidate":null}`},
		{SignalError(SignalErrUnknownPeer, "no such peer"),
			`{"type":"error","code":"unknown-peer","message":"no such peer"}`},
		{SignalMessage{Type: SignalTypeWelcome, ICEServers: []SignalICEServer{{URLs: []string{"turn:h"}, Username: "1:a", Credential: "c"}}},
			`{"type":"welcome","iceServers":[{"urls":["turn:h"],"username":"1:a","credential":"c"}]}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestSigValidName(t *testing.T) {
	for _, s := range []string{"a", "Zoë 🎮", strings.Repeat("é", MaxNameLen)} {
		if !sigValidName(s) {
			t.Errorf("sigValidName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a\nb", "\xff", strings.Repeat("x", MaxNameLen+1)} {
		if sigValidName(s) {
			t.Errorf("sigValidName(%q) = true", s)
		}
	}
}
