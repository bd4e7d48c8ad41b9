package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"

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
		{"t": "input", "seq": uint64(7), "dx": float32(1), "dy": int8(-1)},
	} {
		m, err := DecodeClient(mustMarshal(t, frame))
		if err != nil {
			t.Fatalf("%v: %v", frame, err)
		}
		in, ok := m.(*Input)
		dx, _ := in.Fields.Get("dx")
		dy, _ := in.Fields.Get("dy")
		if !ok || in.Seq != 7 || dx != 1 || dy != -1 || len(in.Fields.All()) != 2 {
			t.Fatalf("%v decoded as %+v", frame, m)
		}
	}
}

// TestDecodeClientInputFields: an input carries any mode's fields, in the
// order sent, each a number in [-1, 1]; the names of a ClientDecoder's mode
// come back as its own strings.
func TestDecodeClientInputFields(t *testing.T) {
	frame := MustEncode(NewInput(3, []string{"ax", "ay", "fire"}, -0.5, 0.25, 1))
	var d ClientDecoder
	names := []string{"dx", "dy", "ax", "ay", "fire"}
	d.SetInputs(names)
	m, err := d.Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	all := m.(*Input).Fields.All()
	if len(all) != 3 || all[0] != (InputField{"ax", -0.5}) || all[1] != (InputField{"ay", 0.25}) || all[2] != (InputField{"fire", 1}) {
		t.Fatalf("fields %+v", all)
	}
	if unsafe.StringData(all[2].Name) != unsafe.StringData(names[4]) {
		t.Fatal("a declared name was not returned as the decoder's own string")
	}
	many := map[string]any{"t": "input", "seq": 1}
	for i := range MaxInputFields + 1 {
		many[fmt.Sprintf("f%d", i)] = 0
	}
	var fe *FieldError
	if _, err := DecodeClient(mustMarshal(t, many)); !errors.As(err, &fe) {
		t.Fatalf("%d fields: %v, want a field error", MaxInputFields+1, err)
	}
	if _, err := DecodeClient(mustMarshal(t, map[string]any{"t": "input", "seq": 1, "abcdefghijklmnopq": 1})); !errors.As(err, &fe) {
		t.Fatalf("a 17-byte field name: %v, want a field error", err)
	}
	// Keys of other messages are not input fields.
	m, err = DecodeClient(mustMarshal(t, map[string]any{"t": "input", "seq": 1, "dx": 1, "text": "hi", "name": "x"}))
	if err != nil || len(m.(*Input).Fields.All()) != 1 {
		t.Fatalf("%+v %v", m, err)
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
		"dy bool":       {"t": "input", "seq": 1, "dx": 0, "dy": true},
		"fire array":    {"t": "input", "seq": 1, "fire": []int{1}},
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

// arenaLike is the arena's schema, declared here (wire knows no mode).
func arenaLike(t *testing.T) (*Schema, []Table) {
	s := &Schema{Tables: []TableDef{
		{Name: "p", Columns: []Column{{Name: "x", Vel: "vx"}, {Name: "y", Vel: "vy"}, {Name: "vx"}, {Name: "vy"},
			{Name: "score", Step: 1}, {Name: "rtt", Step: 1}}},
		{Name: "o", Slots: true, Columns: []Column{{Name: "x"}, {Name: "y"}}},
	}, Input: []string{"dx", "dy"}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s, NewTables(s)
}

func TestSnapSharedPlusAck(t *testing.T) {
	enc := NewSnapEncoder()
	schema, tables := arenaLike(t)
	tables[0].Add(1, 10.5, 20.25, 240, 0, 3, 12)
	tables[0].Add(2, 1, 2, 0, 0, 0, 0)
	tables[1].Add(9, 100, 200)
	shared := enc.Shared(42, 1700000000123, schema, tables)
	for _, ack := range []uint64{0, 1, 300, 1 << 40} {
		frame := append(append([]byte{}, shared...), enc.Ack(ack)...)
		m, err := DecodeServer(frame)
		if err != nil {
			t.Fatal(err)
		}
		s := m.(*Snap)
		if s.N != 42 || s.ST != 1700000000123 || s.Ack != ack || len(s.Table("p")) != 2 || len(s.Table("o")) != 1 {
			t.Fatalf("ack %d: %+v", ack, s)
		}
		if got := s.Table("p").Find(1); !slices.Equal(got, []float64{1, 10.5, 20.25, 240, 0, 3, 12}) {
			t.Fatalf("row: %v", got)
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
	schema, tables := arenaLike(t)
	tables[0].Add(1, 10.5, 20.25, -240, 0, 3, 12)
	tables[0].Add(2, 1.1, 2, 0, 0, 0, 0)
	tables[1].Add(9, 100, 200.5)
	raw := AppendSnapJSON(nil, 42, 1700000000123, schema, tables)
	var s SpectatorSnap
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	p, o := s.Table("p"), s.Table("o")
	if s.N != 42 || s.ST != 1700000000123 || len(p) != 2 || len(o) != 1 {
		t.Fatalf("%s decoded as %+v", raw, s)
	}
	if !slices.Equal(p[0], []float64{1, 10.5, 20.25, -240, 0, 3, 12}) || !slices.Equal(o[0], []float64{9, 100, 200.5}) {
		t.Fatalf("rows %v %v", p[0], o[0])
	}
	if math.Abs(p[1][1]-1.1) > 1e-6 {
		t.Fatalf("x %v", p[1][1])
	}
	empty := AppendSnapJSON(nil, 1, 2, schema, NewTables(schema))
	if string(empty) != `{"n":1,"st":2,"p":[],"o":[]}` {
		t.Fatalf("empty snap %s", empty)
	}
}
