package wire

import (
	"encoding/json"
	"errors"
	"testing"
)

func FuzzDecodeSignal(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","call":"c1","name":"ana","token":"x"}`,
		`{"type":"offer","to":"ab","sdp":"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}`,
		`{"type":"answer","to":"ab","sdp":"v=0","from":"forged"}`,
		`{"type":"ice-candidate","to":"ab","candidate":null}`,
		`{"type":"ice-candidate","to":"ab","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"leave"}`,
		`{"type":"welcome"}`,
		`{"type":"join","call":"c","name":"\u00e9\u00e9"}`,
		`{"type":["join"]}`,
		`not json`,
		``,
		`{"type":"join","call":"c","name":"n","type":"leave"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeSignal(data)
		if err != nil {
			if !errors.Is(err, ErrSignalSyntax) && !errors.Is(err, ErrSignalUnknownType) && !errors.Is(err, ErrSignalInvalid) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		if m.From != "" || m.ID != "" || m.Peers != nil || m.ICEServers != nil || m.Code != "" {
			t.Fatalf("server-only field survived decoding: %+v", m)
		}
		switch m.Type {
		case SignalTypeJoin:
			if !ValidID(m.Call) || !sigValidName(m.Name) {
				t.Fatalf("invalid join accepted: %+v", m)
			}
		case SignalTypeOffer, SignalTypeAnswer, SignalTypeICECandidate:
			if !ValidID(m.To) {
				t.Fatalf("invalid to accepted: %+v", m)
			}
		}
		// A decoded message re-encodes and decodes to the same message.
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := DecodeSignal(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v", enc, err)
		}
		enc2, _ := json.Marshal(m2)
		if string(enc) != string(enc2) {
			t.Fatalf("round trip changed message:\n%s\n%s", enc, enc2)
		}
	})
}
