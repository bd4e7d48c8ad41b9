package wire

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// testSchema has a table of each kind the delta format knows: keyed rows
// with rates (players, and short-lived shots with a half-unit column), and
// slots (orbs).
func testSchema() *Schema {
	s := &Schema{
		Tables: []TableDef{
			{Name: "p", Columns: []Column{{Name: "id"}, {Name: "x", Vel: "vx"}, {Name: "y", Vel: "vy"},
				{Name: "vx"}, {Name: "vy"}, {Name: "score", Step: 1}, {Name: "rtt", Step: 1}}},
			{Name: "o", Slots: true, Columns: []Column{{Name: "id"}, {Name: "x"}, {Name: "y"}}},
			{Name: "s", Columns: []Column{{Name: "x", Vel: "vx"}, {Name: "y", Vel: "vy"}, {Name: "vx"}, {Name: "vy"},
				{Name: "heat", Step: 0.5}, {Name: "owner", Step: 1}}},
		},
		Input: []string{"dx", "dy"},
	}
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return s
}

// deltaWorld makes a sequence of quantized states: players moving with
// smoothly turning velocities, stopped by walls, scoring, their round trips
// changing, players entering and leaving, orbs replaced, and shots fired
// that fly straight and vanish after a few ticks.
type deltaWorld struct {
	rng    *rand.Rand
	codec  *DeltaCodec
	n      uint64
	st     int64
	p      [][7]float64
	o      [][3]float64
	s      [][7]float64 // shots: id, x, y, vx, vy, heat, owner
	ages   []int        // ticks each shot has flown
	nextID uint32
	orbID  uint32
	shotID uint32
	angle  map[uint32]float64
	tables []Table
}

func newDeltaWorld(seed uint64, hz, players, orbs int) *deltaWorld {
	schema := testSchema()
	w := &deltaWorld{rng: rand.New(rand.NewPCG(seed, 1)), codec: NewDeltaCodec(schema, hz), st: 1_760_000_000_000,
		angle: map[uint32]float64{}, tables: NewTables(schema)}
	for range players {
		w.add()
	}
	for range orbs {
		w.orbID++
		w.o = append(w.o, [3]float64{float64(w.orbID), 8 + w.rng.Float64()*1264, 8 + w.rng.Float64()*704})
	}
	return w
}

func (w *deltaWorld) add() {
	w.nextID += 1 + uint32(w.rng.IntN(3))
	w.p = append(w.p, [7]float64{float64(w.nextID), 16 + w.rng.Float64()*1248, 16 + w.rng.Float64()*688})
	w.angle[w.nextID] = w.rng.Float64() * 2 * math.Pi
}

// step advances one tick of 1/hz and returns the quantized state.
func (w *deltaWorld) step(hz int) *DeltaState {
	w.n++
	w.st += int64(1000/hz) + int64(w.rng.IntN(2))
	dt := 1 / float64(hz)
	for i := range w.p {
		p := &w.p[i]
		id := uint32(p[0])
		a := w.angle[id] + (w.rng.Float64()-0.5)*0.6
		w.angle[id] = a
		vx, vy := 240*math.Cos(a), 240*math.Sin(a)
		if w.rng.IntN(10) == 0 {
			vx, vy = 0, 0 // standing still
		}
		p[1], p[3] = moveAxis(p[1], vx, dt, 16, 1264)
		p[2], p[4] = moveAxis(p[2], vy, dt, 16, 704)
		if w.rng.IntN(50) == 0 {
			p[5]++
		}
		if w.rng.IntN(40) == 0 {
			p[6] = float64(1 + w.rng.IntN(300))
		}
		if w.rng.IntN(6) == 0 {
			w.shotID++
			w.s = append(w.s, [7]float64{float64(w.shotID), p[1], p[2], 700 * math.Cos(a), 700 * math.Sin(a), 3, p[0]})
			w.ages = append(w.ages, 0)
		}
	}
	for i := 0; i < len(w.s); i++ {
		sh := &w.s[i]
		sh[1] += sh[3] * dt
		sh[2] += sh[4] * dt
		sh[5] -= 0.25
		if w.ages[i]++; w.ages[i] > 12 || sh[1] < 0 || sh[1] > 1280 {
			w.s = append(w.s[:i], w.s[i+1:]...)
			w.ages = append(w.ages[:i], w.ages[i+1:]...)
			i--
		}
	}
	switch r := w.rng.IntN(60); {
	case r == 0 && len(w.p) > 0:
		i := w.rng.IntN(len(w.p))
		w.p = append(w.p[:i], w.p[i+1:]...)
	case r == 1:
		w.add()
	}
	if w.rng.IntN(8) == 0 && len(w.o) > 0 {
		w.orbID++
		w.o[w.rng.IntN(len(w.o))] = [3]float64{float64(w.orbID), 8 + w.rng.Float64()*1264, 8 + w.rng.Float64()*704}
	}
	for i := range w.tables {
		w.tables[i].Reset()
	}
	for _, p := range w.p {
		w.tables[0].Add(p[:]...)
	}
	for _, o := range w.o {
		w.tables[1].Add(o[:]...)
	}
	for _, sh := range w.s {
		w.tables[2].Add(sh[:]...)
	}
	s := &DeltaState{}
	w.codec.Set(s, w.n, w.st, w.tables)
	return s
}

func moveAxis(x, v, dt, lo, hi float64) (float64, float64) {
	nx := x + v*dt
	switch {
	case nx < lo:
		return lo, 0
	case nx > hi:
		return hi, 0
	}
	return nx, v
}

func sameDeltaState(a, b *DeltaState) bool {
	if a.N != b.N || a.ST != b.ST || len(a.T) != len(b.T) {
		return false
	}
	for i := range a.T {
		if a.T[i].Cols != b.T[i].Cols || len(a.T[i].Q) != len(b.T[i].Q) || len(a.T[i].Q) > 0 && !reflect.DeepEqual(a.T[i].Q, b.T[i].Q) {
			return false
		}
	}
	return true
}

// TestDeltaRebuildsEveryStateFromAnyBaseline encodes each state of a long
// run against baselines of every age the server may use, and a keyframe,
// and checks that decoding gives back exactly the same quantized state.
func TestDeltaRebuildsEveryStateFromAnyBaseline(t *testing.T) {
	for _, hz := range []int{20, 30, 200} {
		w := newDeltaWorld(uint64(hz), hz, 16, 12)
		var hist []*DeltaState
		for range 2000 {
			cur := w.step(hz)
			hist = append(hist, cur)
			ages := []int{0, 1, 2, 3, 7, DeltaHistory - 1}
			for _, age := range ages {
				var base *DeltaState
				if age > 0 {
					if age >= len(hist) {
						continue
					}
					base = hist[len(hist)-1-age]
				}
				d := w.codec.Append(nil, base, cur)
				var out DeltaState
				err := w.codec.Decode(d, func(n uint64) *DeltaState {
					if base != nil && base.N == n {
						return base
					}
					return nil
				}, &out)
				if err != nil {
					t.Fatalf("%d Hz, tick %d, age %d: %v", hz, cur.N, age, err)
				}
				if !sameDeltaState(&out, cur) {
					t.Fatalf("%d Hz, tick %d, age %d: rebuilt\n%+v\nwant\n%+v", hz, cur.N, age, out, *cur)
				}
			}
		}
	}
}

// TestDeltaQuantization checks the documented precision: every value a
// client rebuilds is a whole number of its column's step and within half a
// step of the server's.
func TestDeltaQuantization(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, step := range []float64{DefaultStep, 1.0 / 256, 0.01, 0.5, 1, 5} {
		for range 20000 {
			v := (rng.Float64() - 0.5) * 4000
			got := Dequantize(Quantize(v, step), step)
			if math.Abs(got-v) > step/2*(1+1e-12) || math.Abs(got/step-math.Round(got/step)) > 1e-6 {
				t.Fatalf("step %v: %v comes back as %v", step, v, got)
			}
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if Quantize(v, DefaultStep) != 0 {
			t.Fatalf("Quantize(%v) = %d", v, Quantize(v, DefaultStep))
		}
	}
	if Quantize(1e300, 1) != 1<<40 || Quantize(-1e300, 1) != -1<<40 {
		t.Fatal("huge values are not clamped")
	}
}

// TestDeltaPredictRoundsLikeJavaScript pins DeltaPredict to the integer
// formula the browser client computes with Math.floor, negative values
// included.
func TestDeltaPredictRoundsLikeJavaScript(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		q := rng.Int64N(200000) - 100000
		vb, vc := rng.Int64N(40000)-20000, rng.Int64N(40000)-20000
		age := uint64(1 + rng.IntN(DeltaHistory))
		hz := 1 + rng.IntN(240)
		k := float64(age)
		want := float64(q) + math.Floor((2*k*float64(vb)+(k+1)*float64(vc-vb)+float64(hz))/float64(2*hz))
		if got := DeltaPredict(q, vb, vc, age, hz); float64(got) != want {
			t.Fatalf("DeltaPredict(%d, %d, %d, %d, %d) = %d, want %v", q, vb, vc, age, hz, got, want)
		}
	}
	// A steady player is predicted to the quantum: one tick at 20 Hz and
	// 240 units/s is 12 units.
	if got := DeltaPredict(64*100, 64*240, 64*240, 1, 20); got != 64*112 {
		t.Fatalf("steady move predicted at %d, want %d", got, 64*112)
	}
}

// TestDeltaSizes shows what the compact encoding buys: a steady room costs
// a few bytes per player, a keyframe well under a full snap.
func TestDeltaSizes(t *testing.T) {
	w := newDeltaWorld(9, 20, 16, 12)
	prev := w.step(20)
	cur := w.step(20)
	key := w.codec.Append(nil, nil, cur)
	delta := w.codec.Append(nil, prev, cur)
	full := NewSnapEncoder().Shared(cur.N, cur.ST, w.codec.Schema(), w.tables)
	t.Logf("16 players, 12 orbs, %d shots: full snap %d B, keyframe %d B, delta %d B", w.tables[2].Len(), len(full), len(key), len(delta))
	if len(key) > len(full)*2/3 || len(delta) > 10*16+12+20*w.tables[2].Len() {
		t.Fatalf("full %d B, keyframe %d B, delta %d B", len(full), len(key), len(delta))
	}
	// Every player and shot went on as predicted, nothing else changed: a
	// byte per row and a few more.
	steady := DeltaState{N: cur.N + 1, ST: cur.ST + 50, T: make([]DeltaTable, 3)}
	steady.T[1] = cur.T[1]
	for _, ti := range []int{0, 2} {
		t := &cur.T[ti]
		steady.T[ti].Cols = t.Cols
		for i := range t.Len() {
			r := append([]int64(nil), t.row(i)...)
			r[1] = DeltaPredict(r[1], r[3], r[3], 1, 20)
			r[2] = DeltaPredict(r[2], r[4], r[4], 1, 20)
			steady.T[ti].Q = append(steady.T[ti].Q, r...)
		}
	}
	if d := w.codec.Append(nil, cur, &steady); len(d) > 16+cur.T[2].Len()+10 {
		t.Fatalf("a steady state takes %d B", len(d))
	}
}

func TestDeltaNeedsItsBaseline(t *testing.T) {
	w := newDeltaWorld(1, 30, 4, 3)
	a := w.step(30)
	b := w.step(30)
	d := w.codec.Append(nil, a, b)
	var out DeltaState
	err := w.codec.Decode(d, func(uint64) *DeltaState { return nil }, &out)
	if !errors.Is(err, ErrDeltaBaseline) {
		t.Fatalf("decoding without the baseline: %v", err)
	}
	// A baseline that is not older than the state makes a keyframe.
	key := w.codec.Append(nil, b, b)
	if err := w.codec.Decode(key, func(uint64) *DeltaState { return nil }, &out); err != nil || !sameDeltaState(&out, b) {
		t.Fatalf("keyframe: %v", err)
	}
}

// TestDeltaFrameAndReceiver goes through the frames a room sends: the
// encoder's map plus an ack, decoded by DecodeServer and applied by a
// DeltaReceiver that acks, as a client does, with the server choosing
// baselines among the acknowledged states.
func TestDeltaFrameAndReceiver(t *testing.T) {
	const hz = 30
	w := newDeltaWorld(2, hz, 8, 12)
	enc := NewDeltaEncoder(w.codec)
	sn := NewSnapEncoder()
	rx := NewDeltaReceiver(w.codec.Schema(), hz)
	hist := map[uint64]*DeltaState{}
	var acked uint64
	for i := range 500 {
		cur := w.step(hz)
		hist[cur.N] = cur
		var base *DeltaState
		if acked != 0 && cur.N-acked < DeltaHistory {
			base = hist[acked]
		}
		frame := append(enc.Frame(base, cur), sn.Ack(uint64(1000+i))...)
		m, err := DecodeServer(frame)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := m.(*Delta)
		if !ok || d.T != TypeDelta || d.Ack != uint64(1000+i) {
			t.Fatalf("decoded %T %+v", m, m)
		}
		snap, err := rx.Apply(d)
		if err != nil {
			t.Fatalf("tick %d: %v", cur.N, err)
		}
		want := w.codec.Snap(cur, uint64(1000+i))
		if !reflect.DeepEqual(snap, want) {
			t.Fatalf("tick %d: got %+v, want %+v", cur.N, snap, want)
		}
		if i%3 != 2 { // acks get lost or late now and then
			acked = snap.N
		}
	}
	if rx.Keyframes() != 1 {
		t.Fatalf("%d keyframes, want 1", rx.Keyframes())
	}
}

func TestDecodeClientCapsAndAck(t *testing.T) {
	m, err := DecodeClient(mustMarshal(t, map[string]any{"t": "join", "name": "ana", "room": "auto", "caps": []any{"delta", "future"}}))
	if err != nil {
		t.Fatal(err)
	}
	if j := m.(*Join); !HasCap(j.Caps, CapDelta) || len(j.Caps) != 2 {
		t.Fatalf("caps %v", j.Caps)
	}
	m, err = DecodeClient(MustEncode(&Join{Name: "ana", Room: "auto"}))
	if err != nil || m.(*Join).Caps != nil || HasCap(m.(*Join).Caps, CapDelta) {
		t.Fatalf("join without caps: %+v %v", m, err)
	}
	for _, n := range []any{0, 12, 12.0, uint64(MaxSeq)} {
		m, err := DecodeClient(mustMarshal(t, map[string]any{"t": "ack", "n": n}))
		if err != nil {
			t.Fatalf("ack %v: %v", n, err)
		}
		if a := m.(*Ack); float64(a.N) != reflect.ValueOf(n).Convert(reflect.TypeFor[float64]()).Float() {
			t.Fatalf("ack %v decoded as %d", n, a.N)
		}
	}
	tooMany := make([]string, MaxCaps+1)
	for i := range tooMany {
		tooMany[i] = "x"
	}
	for _, frame := range []map[string]any{
		{"t": "join", "name": "ana", "room": "auto", "caps": "delta"},
		{"t": "join", "name": "ana", "room": "auto", "caps": []any{1}},
		{"t": "join", "name": "ana", "room": "auto", "caps": []string{""}},
		{"t": "join", "name": "ana", "room": "auto", "caps": tooMany},
		{"t": "ack"},
		{"t": "ack", "n": -1},
		{"t": "ack", "n": 1.5},
		{"t": "ack", "n": "7"},
		{"t": "ack", "n": math.NaN()},
	} {
		_, err := DecodeClient(mustMarshal(t, frame))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("%v: %v, want a field error", frame, err)
		}
	}
}

// FuzzDecodeClientDelta runs the client decoder on frames near the delta
// mode messages (join with caps, ack) with the outcomes FuzzDecodeClient
// allows.
func FuzzDecodeClientDelta(f *testing.F) {
	f.Add(MustEncode(&Join{Name: "ana", Room: "auto", Caps: []string{CapDelta}}))
	f.Add(MustEncode(&Join{Name: "ana", Room: "r1", Resume: "r1.x", Caps: []string{"a", "b", "c"}}))
	f.Add(MustEncode(&Ack{N: 1234}))
	f.Add(MustEncode(&Ack{N: 0}))
	f.Add([]byte{0x82, 0xa1, 't', 0xa3, 'a', 'c', 'k', 0xa1, 'n', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x84, 0xa1, 't', 0xa4, 'j', 'o', 'i', 'n', 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'a', 0xa4, 'r', 'o', 'o', 'm', 0xa4, 'a', 'u', 't', 'o', 0xa4, 'c', 'a', 'p', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := DecodeClient(frame)
		var fe *FieldError
		switch {
		case err == nil:
			again, err := DecodeClient(MustEncode(m))
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("re-encoded %+v decodes as %+v, %v", m, again, err)
			}
		case errors.Is(err, ErrMalformed), errors.As(err, &fe):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzDecodeDelta feeds arbitrary bytes to the delta decoder with a real
// baseline at hand: it must not panic or allocate without bound, and what it
// accepts must encode back to an equivalent delta.
func FuzzDecodeDelta(f *testing.F) {
	w := newDeltaWorld(4, 30, 6, 5)
	base := w.step(30)
	for range 3 {
		cur := w.step(30)
		f.Add(w.codec.Append(nil, base, cur))
		f.Add(w.codec.Append(nil, nil, cur))
	}
	f.Add([]byte{})
	f.Add([]byte{0x05, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f})
	lookup := func(n uint64) *DeltaState {
		if n == base.N {
			return base
		}
		return nil
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		var out DeltaState
		err := w.codec.Decode(d, lookup, &out)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDeltaBaseline) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		var b *DeltaState
		if n, age, err := DeltaHead(d); err != nil || n != out.N {
			t.Fatalf("DeltaHead of accepted bytes: %d, %v; decoded tick %d", n, err, out.N)
		} else if age != 0 {
			b = base
		}
		var again DeltaState
		if err := w.codec.Decode(w.codec.Append(nil, b, &out), lookup, &again); err != nil || !sameDeltaState(&again, &out) {
			t.Fatalf("accepted %x as %+v; encoded again it gives %+v, %v", d, out, again, err)
		}
	})
}

func BenchmarkEncode16Players(b *testing.B) {
	w := newDeltaWorld(8, 20, 16, 12)
	prev := w.step(20)
	cur := w.step(20)
	schema := w.codec.Schema()
	b.Run("full", func(b *testing.B) {
		enc := NewSnapEncoder()
		b.ReportAllocs()
		for b.Loop() {
			enc.Shared(cur.N, cur.ST, schema, w.tables)
		}
	})
	b.Run("delta", func(b *testing.B) {
		enc := NewDeltaEncoder(w.codec)
		var st DeltaState
		b.ReportAllocs()
		for b.Loop() {
			w.codec.Set(&st, cur.N, cur.ST, w.tables) // quantizing is part of the cost
			enc.Frame(prev, &st)
		}
	})
	b.Run("keyframe", func(b *testing.B) {
		enc := NewDeltaEncoder(w.codec)
		b.ReportAllocs()
		for b.Loop() {
			enc.Frame(nil, cur)
		}
	})
	b.Run("apply", func(b *testing.B) {
		d := w.codec.Append(nil, prev, cur)
		var out DeltaState
		lookup := func(uint64) *DeltaState { return prev }
		b.ReportAllocs()
		for b.Loop() {
			if err := w.codec.Decode(d, lookup, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
