package wire

import (
	"errors"
	"testing"
)

// FuzzDecodeClient checks that no frame from a player can panic the decoder
// and that every outcome is one of the three the server acts on.
func FuzzDecodeClient(f *testing.F) {
	for _, m := range []ClientMessage{
		&Join{Name: "ana", Room: "auto"}, &Input{Seq: 1, DX: 0.5, DY: -1}, &Ping{TS: 1},
		&Chat{Text: "hi"}, &Typing{}, &Leave{},
	} {
		f.Add(MustEncode(m))
	}
	f.Add([]byte{0xc1})
	f.Add([]byte{0x81, 0xa1, 't', 0xa4, 'f', 'l', 'y', '!'})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := DecodeClient(frame)
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
