package player

import (
	"math"
	"testing"

	"github.com/tickwire/tickwire/wire"
)

// snapFrame is a snapshot of a full room of 16 players and 12 orbs, as
// the server encodes it, with ack 77.
func snapFrame() []byte {
	p := make([]wire.PlayerState, 16)
	for i := range p {
		p[i] = wire.PlayerState{ID: uint32(i + 1), X: float64(40 * i), Y: 300.5, VX: 120, VY: -60, Score: i, RTT: 2}
	}
	o := make([]wire.Orb, 12)
	for i := range o {
		o[i] = wire.Orb{ID: uint32(100 + i), X: float64(9 * i), Y: 17}
	}
	e := wire.NewSnapEncoder()
	shared := e.Shared(123456, 1764000000123, p, o)
	return append(shared, e.Ack(77)...)
}

func TestHead(t *testing.T) {
	h, err := Head(snapFrame())
	if err != nil || h.T != wire.TypeSnap || h.N != 123456 || h.ST != 1764000000123 {
		t.Fatalf("%+v %v", h, err)
	}
	chat, _ := wire.Encode(&wire.ChatLine{ID: 3, Name: "ana", Text: "hi there", ST: 42})
	if h, err := Head(chat); err != nil || h.T != wire.TypeChat || string(h.Text) != "hi there" || h.ST != 42 {
		t.Fatalf("%+v %v", h, err)
	}
	welcome, _ := wire.Encode(&wire.Welcome{ID: 1, Room: "r", Hz: 20, Players: []wire.PlayerInfo{{ID: 1, Name: "a"}}, ST: -5})
	if h, err := Head(welcome); err != nil || h.T != wire.TypeWelcome || h.ST != -5 {
		t.Fatalf("%+v %v", h, err)
	}
	for _, bad := range [][]byte{nil, {0x91, 0x01}, {0x81, 0xa1, 't'}, snapFrame()[:20]} {
		if _, err := Head(bad); err == nil {
			t.Errorf("Head(% x) = nil error", bad)
		}
	}
}

func TestAppendInput(t *testing.T) {
	m, err := wire.DecodeClient(AppendInput(nil, 9, 0.5, -1))
	in, ok := m.(*wire.Input)
	if err != nil || !ok || in.Seq != 9 || in.DX != 0.5 || in.DY != -1 {
		t.Fatalf("%+v %v", m, err)
	}
	if len(AppendInput(nil, 9, 0.5, -1)) != inputLen {
		t.Fatalf("inputLen %d, AppendInput writes %d bytes", inputLen, len(AppendInput(nil, 9, 0.5, -1)))
	}
	m, err = wire.DecodeClient(AppendAck(AppendInput([]byte("xyz"), 9, 0.5, -1), 1234)[3:])
	if in, ok := m.(*wire.Input); err != nil || !ok || in.Seq != 9 || in.DX != 0.5 || in.DY != -1 || in.N != 1234 {
		t.Fatalf("input with an ack: %+v %v", m, err)
	}
	m, err = wire.DecodeClient(AppendChat(nil, "hello"))
	if c, ok := m.(*wire.Chat); err != nil || !ok || c.Text != "hello" {
		t.Fatalf("%+v %v", m, err)
	}
}

// BenchmarkDecodeSnap is what a Client spends on each snapshot it reads.
func BenchmarkDecodeSnap(b *testing.B) {
	f := snapFrame()
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.DecodeServer(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHead is what a load bot spends on each snapshot with Head.
func BenchmarkHead(b *testing.B) {
	f := snapFrame()
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Head(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeInput compares the reflective encoder with AppendInput.
func BenchmarkEncodeInput(b *testing.B) {
	b.Run("wire.Encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := wire.Encode(&wire.Input{Seq: uint64(i), DX: math.Cos(float64(i)), DY: 0.5}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendInput", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; b.Loop(); i++ {
			buf = AppendInput(buf[:0], uint64(i), math.Cos(float64(i)), 0.5)
		}
	})
}
