package wire

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// FuzzDecodeClient checks that no frame from a player can panic the decoder
// and that every outcome is one of the three the server acts on.
func FuzzDecodeClient(f *testing.F) {
	for _, m := range []ClientMessage{
		&Join{Name: "ana", Room: "auto"}, NewInput(1, []string{"dx", "dy"}, 0.5, -1), &Ping{TS: 1},
		&Chat{Text: "hi"}, &Typing{}, &Leave{}, &RTCOffer{SDP: "v=0\r\n"}, &RTCICE{},
		&RTCICE{Candidate: &ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", SDPMid: new("0"), SDPMLineIndex: new(uint16(0))}},
	} {
		f.Add(MustEncode(m))
	}
	f.Add([]byte{0xc1})
	f.Add([]byte{0x81, 0xa1, 't', 0xa4, 'f', 'l', 'y', '!'})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xd9, 20, 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 't', 0xa1, 'x'})
	f.Add([]byte{0x81, 0xa1, 't', 0xd9, 5, 'i', 'n', 'p', 'u', 't'})
	f.Add([]byte{0x81, 0xa1, 't', 0xb1, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q'})
	var reused ClientDecoder
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := DecodeClient(frame)
		// A ClientDecoder decodes alike, storage aside.
		if m2, err2 := reused.Decode(frame); fmt.Sprint(err2) != fmt.Sprint(err) || !reflect.DeepEqual(m2, m) {
			t.Fatalf("ClientDecoder: %#v, %v; DecodeClient: %#v, %v", m2, err2, m, err)
		}
		var fe *FieldError
		switch {
		case err == nil:
			if m == nil {
				t.Fatal("nil message without error")
			}
			if again, err := DecodeClient(MustEncode(m)); err != nil || again.Type() != m.Type() {
				t.Fatalf("re-encoded %T does not decode: %v", m, err)
			}
		case errors.Is(err, ErrMalformed), errors.As(err, &fe):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// Decoding an input with a ClientDecoder allocates nothing.
func TestClientDecoderInputAllocatesNothing(t *testing.T) {
	frame := MustEncode(NewInput(42, []string{"dx", "dy"}, 0.5, -1))
	var d ClientDecoder
	d.SetInputs([]string{"dx", "dy"})
	allocs := testing.AllocsPerRun(1000, func() {
		m, err := d.Decode(frame)
		if in, ok := m.(*Input); err != nil || !ok || in.Seq != 42 || in.Fields.All()[0] != (InputField{"dx", 0.5}) || in.Fields.All()[1] != (InputField{"dy", -1}) {
			t.Fatalf("%#v, %v", m, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per input", allocs)
	}
}
