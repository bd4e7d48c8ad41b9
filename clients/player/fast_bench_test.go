package player

import (
	"math"
	"reflect"
	"testing"

	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

// snapFrame is a snapshot of a full arena room of 16 players and 12 orbs,
// as the server encodes it, with ack 77.
func snapFrame() []byte {
	spec := arena.Spec()
	if err := spec.Validate(); err != nil {
		panic(err)
	}
	schema := spec.Schema()
	tables := wire.NewTables(schema)
	for i := range 16 {
		tables[arena.TablePlayers].Add(float64(i+1), float64(40*i), 300.5, 120, -60, float64(i), 2)
	}
	for i := range 12 {
		tables[arena.TableOrbs].Add(float64(100+i), float64(9*i), 17)
	}
	e := wire.NewSnapEncoder()
	shared := e.Shared(123456, 1764000000123, schema, tables)
	return append(shared, e.Ack(77)...)
}

func TestHead(t *testing.T) {
	h, err := Head(snapFrame())
	if err != nil || h.T != wire.TypeSnap || h.N != 123456 || h.ST != 1764000000123 {
		t.Fatalf("%+v %v", h, err)
	}
	m, err := wire.DecodeServer(snapFrame())
	if s, ok := m.(*wire.Snap); err != nil || !ok || s.N != 123456 || s.Ack != 77 || len(arena.Players(s)) != 16 || len(arena.Orbs(s)) != 12 {
		t.Fatalf("the frame decodes as %+v %v", m, err)
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

// arenaInput is the arena's input fields.
var arenaInput = []string{"dx", "dy"}

func TestAppendInput(t *testing.T) {
	dxdy := func(in *wire.Input) (dx, dy float64, ok bool) {
		dx, okx := in.Fields.Get("dx")
		dy, oky := in.Fields.Get("dy")
		return dx, dy, okx && oky && len(in.Fields.All()) == 2
	}
	m, err := wire.DecodeClient(AppendInput(nil, 9, 0, arenaInput, []float64{0.5, -1}))
	in, ok := m.(*wire.Input)
	if err != nil || !ok || in.Seq != 9 || in.N != 0 {
		t.Fatalf("%+v %v", m, err)
	}
	if dx, dy, ok := dxdy(in); !ok || dx != 0.5 || dy != -1 {
		t.Fatalf("fields %+v", in.Fields.All())
	}
	// What AppendInput writes reads as what Input sends (wire.Encode).
	sent := wire.NewInput(9, arenaInput, 0.5, -1)
	sent.N = 1234
	got, err1 := wire.DecodeClient(AppendInput(nil, 9, 1234, arenaInput, []float64{0.5, -1}))
	want, err2 := wire.DecodeClient(wire.MustEncode(sent))
	if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("AppendInput reads as %+v (%v), wire.Encode as %+v (%v)", got, err1, want, err2)
	}
	m, err = wire.DecodeClient(AppendInput([]byte("xyz"), 9, 1234, arenaInput, []float64{0.5, -1})[3:])
	in, ok = m.(*wire.Input)
	if err != nil || !ok || in.Seq != 9 || in.N != 1234 {
		t.Fatalf("input with an ack: %+v %v", m, err)
	}
	if dx, dy, ok := dxdy(in); !ok || dx != 0.5 || dy != -1 {
		t.Fatalf("input with an ack: fields %+v", in.Fields.All())
	}
	// Names past the values are left out: they count as 0.
	m, err = wire.DecodeClient(AppendInput(nil, 10, 0, arenaInput, []float64{0.25}))
	in, ok = m.(*wire.Input)
	if err != nil || !ok || in.Seq != 10 || len(in.Fields.All()) != 1 {
		t.Fatalf("input with one value: %+v %v", m, err)
	}
	if dx, _ := in.Fields.Get("dx"); dx != 0.25 {
		t.Fatalf("input with one value: dx %v", dx)
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
			if _, err := wire.Encode(wire.NewInput(uint64(i), arenaInput, math.Cos(float64(i)), 0.5)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendInput", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		vals := make([]float64, 2)
		for i := 0; b.Loop(); i++ {
			vals[0], vals[1] = math.Cos(float64(i)), 0.5
			buf = AppendInput(buf[:0], uint64(i), 0, arenaInput, vals)
		}
	})
}
