package shooter

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/wire"
)

const dt = 1.0 / 30

// Columns of the bullets' table (x and y as in the players' table).
const bOwner = 5

func schema(t testing.TB) *game.Schema {
	t.Helper()
	s := Spec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s.Schema()
}

// place puts a player at (x, y) aiming at aim, standing still.
func (m *Mode) place(id uint32, x, y, aim float64) {
	i, ok := m.find(id)
	if !ok {
		panic("no player")
	}
	p := &m.players[i]
	p.x, p.y, p.aim, p.vx, p.vy = x, y, aim, 0, 0
}

// tick steps m once and writes it into f, which it returns the tables of.
func tick(m *Mode, f *game.Frame) []wire.Table {
	m.Step(dt)
	f.Reset()
	m.Write(f)
	return f.Tables()
}

// row returns the row of id in t, or nil.
func row(t *wire.Table, id uint32) []float64 {
	for i := range t.Len() {
		if t.ID(i) == id {
			return t.Row(i)
		}
	}
	return nil
}

// checkTables fails unless every table is sorted by id with unique ids,
// every value is finite, players are inside the walls with hp in (0, 100]
// and bullets inside the field.
func checkTables(t *testing.T, n int, ts []wire.Table) {
	t.Helper()
	for ti := range ts {
		tb := &ts[ti]
		for i := range tb.Len() {
			if i > 0 && tb.ID(i) <= tb.ID(i-1) {
				t.Fatalf("tick %d table %d: ids %d then %d", n, ti, tb.ID(i-1), tb.ID(i))
			}
			r := tb.Row(i)
			for _, v := range r {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("tick %d table %d: row %v", n, ti, r)
				}
			}
			lo := 0.0
			if ti == TablePlayers {
				lo = Radius
				if hp := r[6]; hp <= 0 || hp > HP {
					t.Fatalf("tick %d: hp %v", n, hp)
				}
			}
			if r[colX] < lo || r[colX] > Width-lo || r[colY] < lo || r[colY] > Height-lo {
				t.Fatalf("tick %d table %d: outside the walls: %v", n, ti, r)
			}
		}
	}
}

func TestSpec(t *testing.T) {
	s := Spec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Name != "shooter" || s.Title != "Top-down shooter" || s.Field != (game.Field{W: 1280, H: 720, Speed: 220, R: 14}) {
		t.Fatalf("spec %q %q %+v", s.Name, s.Title, s.Field)
	}
	if s.New == nil || s.Bot == nil {
		t.Fatal("New or Bot missing")
	}
	d := wire.DefaultStep
	want := []game.Table{
		{Name: "p", Columns: []game.Column{{Name: "id", Step: 1}, {Name: "x", Step: d, Vel: "vx"}, {Name: "y", Step: d, Vel: "vy"},
			{Name: "vx", Step: d}, {Name: "vy", Step: d}, {Name: "aim", Step: d},
			{Name: "hp", Step: 1}, {Name: "score", Step: 1}, {Name: "rtt", Step: 1}}},
		{Name: "b", Columns: []game.Column{{Name: "id", Step: 1}, {Name: "x", Step: d, Vel: "vx"}, {Name: "y", Step: d, Vel: "vy"},
			{Name: "vx", Step: d}, {Name: "vy", Step: d}, {Name: "owner", Step: 1}}},
	}
	if len(s.Tables) != len(want) {
		t.Fatalf("%d tables", len(s.Tables))
	}
	for i := range want {
		if g := s.Tables[i]; g.Name != want[i].Name || g.Slots || !slices.Equal(g.Columns, want[i].Columns) {
			t.Errorf("table %d: %+v, want %+v", i, g, want[i])
		}
	}
	sc := s.Schema()
	if sc.Table("p") != TablePlayers || sc.Table("b") != TableBullets || len(s.Tables[0].Columns) != pCols ||
		s.Tables[0].Column("x") != colX || s.Tables[0].Column("y") != colY || s.Tables[1].Column("owner") != bOwner {
		t.Error("constants do not match the schema")
	}
	if !slices.Equal(s.Input, []string{"dx", "dy", "ax", "ay", "fire"}) {
		t.Errorf("input %v", s.Input)
	}
	// Spec returns fresh slices: validating one does not touch another.
	if s2 := Spec(); &s2.Tables[0] == &s.Tables[0] {
		t.Error("Spec shares its tables")
	}
}

// TestDeterminism plays a scripted game of players joining, leaving,
// moving and firing at random, twice from one seed and once from another.
func TestDeterminism(t *testing.T) {
	sc := schema(t)
	a, b, c := New(7), New(7), New(8)
	fa, fb, fc := game.NewFrame(sc), game.NewFrame(sc), game.NewFrame(sc)
	script := rand.New(rand.NewPCG(1, 2))
	var ids []uint32
	next := uint32(1)
	in := make([]float64, nInput)
	differ, hurt, scored, maxBullets := false, false, false, 0
	for n := range 2000 {
		if n%50 == 49 {
			for _, m := range []*Mode{a, b, c} {
				m.Join(ids[0]) // present: nothing happens
			}
		}
		if len(ids) < 10 && script.IntN(40) == 0 || len(ids) < 2 {
			ids = append(ids, next)
			for _, m := range []*Mode{a, b, c} {
				m.Join(next)
			}
			next++
		}
		if len(ids) > 2 && script.IntN(300) == 0 {
			k := script.IntN(len(ids))
			for _, m := range []*Mode{a, b, c} {
				m.Leave(ids[k])
			}
			ids = slices.Delete(ids, k, k+1)
		}
		for _, id := range ids {
			if script.IntN(8) != 0 {
				continue
			}
			for i := range in {
				in[i] = script.Float64()*2 - 1
			}
			in[inFire] = float64(script.IntN(2))
			for _, m := range []*Mode{a, b, c} {
				m.Input(id, in)
			}
			in[0] = 42 // the modes keep no reference to in
		}
		ta, tb, tc := tick(a, fa), tick(b, fb), tick(c, fc)
		checkTables(t, n, ta)
		checkTables(t, n, tc)
		for i := range ta {
			if !slices.Equal(ta[i].Data, tb[i].Data) {
				t.Fatalf("tick %d table %d: same seed, different rows", n, i)
			}
			differ = differ || !slices.Equal(ta[i].Data, tc[i].Data)
		}
		p := &ta[TablePlayers]
		for i := range p.Len() {
			hurt = hurt || p.Row(i)[6] < HP
			scored = scored || p.Row(i)[7] > 0
		}
		maxBullets = max(maxBullets, ta[TableBullets].Len())
	}
	if !differ {
		t.Error("seeds 7 and 8 wrote the same tables")
	}
	if !hurt || !scored || maxBullets < 5 {
		t.Errorf("a dull game: hurt %v, scored %v, at most %d bullets", hurt, scored, maxBullets)
	}
}

// TestFire holds fire for 1 s and follows the bullets.
func TestFire(t *testing.T) {
	sc := schema(t)
	m, f := New(1), game.NewFrame(sc)
	m.Join(3)
	m.place(3, 400, 300, 0)
	m.Input(3, []float64{0, 0, 0.3, 0.3, 1}) // aim down-right, any length
	seen := map[uint32][2]int{}              // id: first and last tick seen
	for n := range 60 {
		if n == 30 {
			m.Input(3, []float64{0, 0, 0, 0, 0}) // release; (0, 0) keeps the aim
		}
		ts := tick(m, f)
		checkTables(t, n, ts)
		if aim := row(&ts[TablePlayers], 3)[5]; math.Abs(aim-math.Pi/4) > 1e-9 {
			t.Fatalf("tick %d: aim %v", n, aim)
		}
		bt := &ts[TableBullets]
		for i := range bt.Len() {
			r, id := bt.Row(i), bt.ID(i)
			s, ok := seen[id]
			if !ok {
				s[0] = n
				c := Muzzle / math.Sqrt2
				if math.Abs(r[colX]-400-c) > 1e-9 || math.Abs(r[colY]-300-c) > 1e-9 {
					t.Errorf("bullet %d starts at %v, %v", id, r[colX], r[colY])
				}
			}
			seen[id] = [2]int{s[0], n}
			if math.Abs(math.Hypot(r[3], r[4])-BulletSpeed) > 1e-9 || math.Abs(r[3]-r[4]) > 1e-9 || r[bOwner] != 3 {
				t.Errorf("bullet %v", r)
			}
		}
	}
	if len(seen) != 5 {
		t.Errorf("%d bullets in 1 s, want 5", len(seen))
	}
	for id, s := range seen {
		if id < 1 || id > 5 {
			t.Errorf("bullet id %d", id)
		}
		if life := float64(s[1]-s[0]+1) * dt; math.Abs(life-BulletLife) > 1e-9 {
			t.Errorf("bullet %d lived %v s", id, life)
		}
	}
	if f.Tables()[TableBullets].Len() != 0 {
		t.Error("bullets left")
	}
}

// TestWallsStopBullets fires at a near wall: bullets vanish there, early.
func TestWallsStopBullets(t *testing.T) {
	m, f := New(1), game.NewFrame(schema(t))
	m.Join(1)
	m.place(1, 1200, 300, 0)
	m.Input(1, []float64{0, 0, 1, 0, 1})
	seen := map[uint32]int{}
	for n := range 60 {
		ts := tick(m, f)
		checkTables(t, n, ts)
		for i := range ts[TableBullets].Len() {
			seen[ts[TableBullets].ID(i)]++
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d bullets in 2 s", len(seen))
	}
	for id, ticks := range seen {
		if ticks > 4 {
			t.Errorf("bullet %d flew %d ticks toward a wall 62 units away", id, ticks)
		}
	}
}

// TestBulletRows has four players fire away from one another, and counts
// the bullet rows that appear and vanish.
func TestBulletRows(t *testing.T) {
	m, f := New(5), game.NewFrame(schema(t))
	for id := uint32(1); id <= 4; id++ {
		m.Join(id)
		a := float64(id) * math.Pi / 2
		m.place(id, 640+100*math.Cos(a), 360+100*math.Sin(a), 0)
		m.Input(id, []float64{0, 0, math.Cos(a), math.Sin(a), 1})
	}
	var prev []uint32
	appeared, vanished := 0, 0
	for n := range 90 {
		ts := tick(m, f)
		checkTables(t, n, ts)
		var ids []uint32
		for i := range ts[TableBullets].Len() {
			ids = append(ids, ts[TableBullets].ID(i))
		}
		for _, id := range ids {
			if !slices.Contains(prev, id) {
				appeared++
			}
		}
		for _, id := range prev {
			if !slices.Contains(ids, id) {
				vanished++
			}
		}
		prev = ids
	}
	// 3 s of 4 players firing 5 shots a second, each shot gone after 0.6 s.
	if appeared != 60 || vanished < 45 {
		t.Errorf("in 3 s: %d bullets appeared, %d vanished", appeared, vanished)
	}
}

// TestHits has player 1 shoot player 2 until it scores.
func TestHits(t *testing.T) {
	m, f := New(3), game.NewFrame(schema(t))
	m.Join(1)
	m.Join(2)
	m.place(1, 400, 360, 0)
	m.place(2, 600, 360, math.Pi)
	m.Input(1, []float64{0, 0, 1, 0, 1})
	hp, hits := HP, 0
	for n := 0; ; n++ {
		if n > 300 {
			t.Fatalf("no score after 10 s, %d hits", hits)
		}
		ts := tick(m, f)
		checkTables(t, n, ts)
		p1, p2 := row(&ts[TablePlayers], 1), row(&ts[TablePlayers], 2)
		if p1[6] != HP || p2[7] != 0 {
			t.Fatalf("tick %d: shooter %v, victim %v", n, p1, p2)
		}
		if p1[7] == 1 {
			if hits != 4 || p2[6] != HP || p2[colX] == 600 && p2[colY] == 360 {
				t.Fatalf("scored after %d hits; victim %v", hits, p2)
			}
			break
		}
		switch int(p2[6]) {
		case hp:
		case hp - Damage:
			hits, hp = hits+1, hp-Damage
		default:
			t.Fatalf("tick %d: hp %d then %v", n, hp, p2[6])
		}
	}
	// A shot from a player who left still counts, for nobody.
	m.Input(1, []float64{0, 0, 1, 0, 0})
	for range 30 {
		m.Step(dt)
	}
	m.place(2, 600, 360, 0)
	m.players[1].hp = Damage
	m.Input(1, []float64{0, 0, 1, 0, 1})
	m.Step(dt)
	m.Leave(1)
	var p2 []float64
	for range 20 {
		ts := tick(m, f)
		if ts[TableBullets].Len() > 0 && ts[TableBullets].Row(0)[bOwner] != 1 {
			t.Fatal("owner changed")
		}
		p2 = row(&ts[TablePlayers], 2)
	}
	if p2[6] != HP || p2[7] != 0 || p2[colX] == 600 {
		t.Errorf("victim of a departed shooter: %v", p2)
	}
}

func TestMove(t *testing.T) {
	m, f := New(9), game.NewFrame(schema(t))
	m.Join(1)
	x, y := m.players[0].x, m.players[0].y
	m.Join(1) // present: nothing happens
	m.Input(77, []float64{1, 1, 1, 1, 1})
	m.Leave(77)
	if len(m.players) != 1 || m.players[0].x != x || m.players[0].y != y || m.players[0].hp != HP || m.players[0].aim != 0 {
		t.Fatalf("players %+v", m.players)
	}
	m.place(1, 640, 360, 0)
	for _, in := range [][]float64{{1, 1}, {5, -7}, {math.Inf(1), math.NaN()}, {0.3, 0.4}} {
		m.Input(1, append(in, math.NaN(), math.Inf(-1), math.NaN()))
		x, y := m.players[0].x, m.players[0].y
		r := row(&tick(m, f)[TablePlayers], 1)
		checkTables(t, 0, f.Tables())
		if d := math.Hypot(r[colX]-x, r[colY]-y); d > Speed*dt+1e-9 || math.Abs(math.Hypot(r[3], r[4])*dt-d) > 1e-9 {
			t.Errorf("input %v: moved %v at %v, %v", in, d, r[3], r[4])
		}
	}
	if r := row(&f.Tables()[TablePlayers], 1); math.Abs(r[3]-0.3*Speed) > 1e-9 || math.Abs(r[4]-0.4*Speed) > 1e-9 {
		t.Errorf("input (0.3, 0.4): velocity %v, %v", r[3], r[4])
	}
	for _, c := range []struct{ dx, dy, x, y float64 }{{1, 1, Width - Radius, Height - Radius}, {-1, 0.2, Radius, Height - Radius}, {1, -1, Width - Radius, Radius}} {
		m.Input(1, []float64{c.dx, c.dy, 0, 0, 0})
		for range 300 {
			tick(m, f)
		}
		if r := row(&f.Tables()[TablePlayers], 1); r[colX] != c.x || r[colY] != c.y || r[3] != 0 || r[4] != 0 {
			t.Errorf("pushing %v, %v: %v", c.dx, c.dy, r)
		}
	}
	f.SetRTT(func(id uint32) int { return int(id) * 10 })
	if r := row(&tick(m, f)[TablePlayers], 1); r[8] != 10 {
		t.Errorf("rtt %v", r[8])
	}
}

func TestBot(t *testing.T) {
	s := Spec()
	bot := s.NewBot(4)
	check := func(out []float64) {
		t.Helper()
		if len(out) != nInput {
			t.Fatalf("%d values", len(out))
		}
		for _, v := range out {
			if !(v >= -1 && v <= 1) {
				t.Fatalf("out of range: %v", out)
			}
		}
		if out[inFire] != 0 && out[inFire] != 1 {
			t.Fatalf("fire %v", out[inFire])
		}
	}
	fired, first := 0, &bot.Input(nil, 1, s.Field)[0]
	for range 3000 {
		out := bot.Input(nil, 1, s.Field)
		check(out)
		if &out[0] != first {
			t.Fatal("a new slice")
		}
		fired += int(out[inFire])
	}
	if fired < 800 || fired > 1200 {
		t.Errorf("blind: fired %d ticks of 3000", fired)
	}
	snap := func(rows ...[]float64) *wire.Snap {
		return &wire.Snap{Tables: map[string]wire.Rows{"p": rows, "b": {{1, 5, 5, 0, 0, 2}}}}
	}
	me := []float64{1, 100, 100, 0, 0, 0, HP, 0, 0}
	for _, c := range []struct {
		others     [][]float64
		ax, ay, fr float64
	}{
		{nil, 0, 0, 0},
		{[][]float64{{2, 400, 500, 0, 0, 0, HP, 0, 0}, {3, 400, 100, 0, 0, 0, HP, 0, 0}}, 1, 0, 1},
		{[][]float64{{2, 100, 600, 0, 0, 0, HP, 0, 0}}, 0, 1, 0},
		{[][]float64{{2, 130, 140, 0, 0, 0, HP, 0, 0}, {4, 1}}, 0.6, 0.8, 1},
	} {
		out := bot.Input(snap(append([][]float64{me}, c.others...)...), 1, s.Field)
		check(out)
		if math.Abs(out[inAX]-c.ax) > 1e-9 || math.Abs(out[inAY]-c.ay) > 1e-9 || out[inFire] != c.fr {
			t.Errorf("others %v: out %v", c.others, out)
		}
		if math.Abs(math.Hypot(out[inDX], out[inDY])-1) > 1e-9 {
			t.Errorf("heading %v, %v", out[inDX], out[inDY])
		}
	}
	check(bot.Input(snap(), 1, s.Field)) // not in the snapshot yet
}

// TestBotsPlay has four bots play a minute from the snapshots they get.
func TestBotsPlay(t *testing.T) {
	s := Spec()
	m, f := s.New(11), game.NewFrame(schema(t))
	var bots []game.Bot
	for id := uint32(1); id <= 4; id++ {
		m.Join(id)
		bots = append(bots, s.NewBot(uint64(id)))
	}
	snap := &wire.Snap{Tables: map[string]wire.Rows{}}
	score := 0.0
	for n := range 1800 {
		m.Step(dt)
		f.Reset()
		m.Write(f)
		checkTables(t, n, f.Tables())
		p := &f.Tables()[TablePlayers]
		snap.Tables["p"] = snap.Tables["p"][:0]
		for i := range p.Len() {
			snap.Tables["p"] = append(snap.Tables["p"], slices.Clone(p.Row(i)))
		}
		for i, b := range bots {
			m.Input(uint32(i+1), b.Input(snap, uint32(i+1), s.Field))
		}
		if n == 1799 {
			for i := range p.Len() {
				score += p.Row(i)[7]
			}
		}
	}
	if score == 0 {
		t.Error("four bots scored nothing in a minute")
	}
}

func BenchmarkStep16Players(b *testing.B) {
	m, f := New(1), game.NewFrame(schema(b))
	in := make([]float64, nInput)
	set := func(n int) {
		for id := uint32(1); id <= 16; id++ {
			a := float64(n)*0.01 + float64(id)
			in[inDX], in[inDY], in[inAX], in[inAY], in[inFire] = math.Cos(a), math.Sin(a), math.Cos(3*a), math.Sin(3*a), 1
			m.Input(id, in)
		}
	}
	for id := uint32(1); id <= 16; id++ {
		m.Join(id)
	}
	for n := range 300 { // to a steady state
		set(n)
		tick(m, f)
	}
	b.ReportAllocs()
	n := 300
	for b.Loop() {
		set(n)
		tick(m, f)
		n++
	}
	b.ReportMetric(float64(f.Tables()[TableBullets].Len()), "bullets")
}
