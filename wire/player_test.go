package wire

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeClientAcceptsIntsAndFloats(t *testing.T) {
	for _, frame := range []map[string]any{
		{"t": "input", "seq": 7, "dx": 1, "dy": -1},
		{"t": "input", "seq": 7.0, "dx": 1.0, "dy": -1.0},
		{"t": "input", "seq": uint64(7), "dx": float32(1), "dy": int8(-1), "extra": []int{1}},
	} {
		m, err := DecodeClient(mustMarshal(t, frame))
		if err != nil {
			t.Fatalf("%v: %v", frame, err)
		}
		in, ok := m.(*Input)
		if !ok || in.Seq != 7 || in.DX != 1 || in.DY != -1 {
			t.Fatalf("%v decoded as %+v", frame, m)
		}
	}
}

func TestDecodeClientMessages(t *testing.T) {
	cases := []struct {
		frame map[string]any
		want  string
	}{
		{map[string]any{"t": "join", "name": "ana", "room": "auto"}, "join"},
		{map[string]any{"t": "join", "name": "ana", "room": "Room_1-x", "token": nil, "resume": "r.abc"}, "join"},
		{map[string]any{"t": "ping", "ts": 12.5}, "ping"},
		{map[string]any{"t": "chat", "text": "héllo"}, "chat"},
		{map[string]any{"t": "typing"}, "typing"},
		{map[string]any{"t": "leave"}, "leave"},
	}
	for _, c := range cases {
		m, err := DecodeClient(mustMarshal(t, c.frame))
		if err != nil {
			t.Fatalf("%v: %v", c.frame, err)
		}
		if m.Type() != c.want {
			t.Fatalf("%v: type %s", c.frame, m.Type())
		}
	}
	m, _ := DecodeClient(mustMarshal(t, map[string]any{"t": "join", "name": "ana", "room": "x", "resume": "r.abc"}))
	if j := m.(*Join); j.Name != "ana" || j.Room != "x" || j.Resume != "r.abc" {
		t.Fatalf("join fields: %+v", j)
	}
}

func TestDecodeClientMalformed(t *testing.T) {
	for name, frame := range map[string][]byte{
		"not msgpack":  {0xc1},
		"empty":        {},
		"not a map":    mustMarshal(t, []int{1, 2}),
		"string":       mustMarshal(t, "join"),
		"unknown type": mustMarshal(t, map[string]any{"t": "fly"}),
		"no type":      mustMarshal(t, map[string]any{"name": "x"}),
		"type not str": mustMarshal(t, map[string]any{"t": 3}),
		"truncated":    mustMarshal(t, map[string]any{"t": "chat", "text": "hello"})[:8],
		"trailing":     append(mustMarshal(t, map[string]any{"t": "leave"}), 0x01),
	} {
		_, err := DecodeClient(frame)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestDecodeClientFieldErrors(t *testing.T) {
	for name, frame := range map[string]map[string]any{
		"dx too big":    {"t": "input", "seq": 1, "dx": 3.5, "dy": 0},
		"dx NaN":        {"t": "input", "seq": 1, "dx": math.NaN(), "dy": 0},
		"dy missing":    {"t": "input", "seq": 1, "dx": 0},
		"dx string":     {"t": "input", "seq": 1, "dx": "1", "dy": 0},
		"seq negative":  {"t": "input", "seq": -1, "dx": 0, "dy": 0},
		"seq fraction":  {"t": "input", "seq": 1.5, "dx": 0, "dy": 0},
		"empty chat":    {"t": "chat", "text": ""},
		"long chat":     {"t": "chat", "text": strings.Repeat("a", 281)},
		"chat not text": {"t": "chat", "text": 5},
		"no name":       {"t": "join", "room": "auto"},
		"long name":     {"t": "join", "name": strings.Repeat("n", 25), "room": "auto"},
		"bad room":      {"t": "join", "name": "a", "room": "no spaces"},
		"ping inf":      {"t": "ping", "ts": math.Inf(1)},
	} {
		_, err := DecodeClient(mustMarshal(t, frame))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err = %v, want *FieldError", name, err)
		}
	}
}

func TestEncodeDecodeServerRoundTrip(t *testing.T) {
	in := &Welcome{ID: 3, Room: "r1", Hz: 30, W: 1280, H: 720, Speed: 240, R: 16, Resume: "r1.x", ST: 1700000000000,
		Players: []PlayerInfo{{ID: 3, Name: "ana"}}}
	frame := MustEncode(in)
	m, err := DecodeServer(frame)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := m.(*Welcome)
	if !ok || w.ID != 3 || w.Room != "r1" || w.Players[0].Name != "ana" || w.T != TypeWelcome || w.ST != in.ST {
		t.Fatalf("round trip: %+v", m)
	}
	if _, err := DecodeServer(mustMarshal(t, map[string]any{"t": "future", "x": 1})); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestSnapSharedPlusAck(t *testing.T) {
	enc := NewSnapEncoder()
	p := []PlayerState{{ID: 1, X: 10.5, Y: 20.25, VX: 240, VY: 0, Score: 3, RTT: 12}, {ID: 2, X: 1, Y: 2}}
	o := []Orb{{ID: 9, X: 100, Y: 200}}
	shared := enc.Shared(42, 1700000000123, p, o)
	for _, ack := range []uint64{0, 1, 300, 1 << 40} {
		frame := append(append([]byte{}, shared...), enc.Ack(ack)...)
		m, err := DecodeServer(frame)
		if err != nil {
			t.Fatal(err)
		}
		s := m.(*Snap)
		if s.N != 42 || s.ST != 1700000000123 || s.Ack != ack || len(s.P) != 2 || len(s.O) != 1 {
			t.Fatalf("ack %d: %+v", ack, s)
		}
		if got := s.P[0]; got.ID != 1 || got.X != 10.5 || got.Y != 20.25 || got.VX != 240 || got.Score != 3 || got.RTT != 12 {
			t.Fatalf("row: %+v", got)
		}
	}
	// The shared part is untouched by later encodes of acks.
	before := string(shared)
	enc.Ack(99)
	if string(shared) != before {
		t.Fatal("Ack changed a shared snapshot")
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{"a": true, "Az09_-": true, "": false, "a b": false, "é": false, strings.Repeat("x", 64): true, strings.Repeat("x", 65): false} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) != %v", id, want)
		}
	}
}

func TestAppendSnapJSONDecodes(t *testing.T) {
	p := []PlayerState{{ID: 1, X: 10.5, Y: 20.25, VX: -240, VY: 0, Score: 3, RTT: 12}, {ID: 2, X: 1.1, Y: 2}}
	o := []Orb{{ID: 9, X: 100, Y: 200.5}}
	raw := AppendSnapJSON(nil, 42, 1700000000123, p, o)
	var s SpectatorSnap
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if s.N != 42 || s.ST != 1700000000123 || len(s.P) != 2 || len(s.O) != 1 {
		t.Fatalf("%s decoded as %+v", raw, s)
	}
	if s.P[0] != [7]float64{1, 10.5, 20.25, -240, 0, 3, 12} || s.O[0] != [3]float64{9, 100, 200.5} {
		t.Fatalf("rows %v %v", s.P[0], s.O[0])
	}
	if math.Abs(s.P[1][1]-1.1) > 1e-6 {
		t.Fatalf("x %v", s.P[1][1])
	}
	empty := AppendSnapJSON(nil, 1, 2, nil, nil)
	if string(empty) != `{"n":1,"st":2,"p":[],"o":[]}` {
		t.Fatalf("empty snap %s", empty)
	}
}
