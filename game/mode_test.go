package game_test

import (
	"math"
	"testing"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/wire"
)

// dots is a tiny mode: each player is a dot that moves by its input.
type dots struct{ pos map[uint32][2]float64 }

func (d *dots) Join(id uint32)  { d.pos[id] = [2]float64{} }
func (d *dots) Leave(id uint32) { delete(d.pos, id) }
func (d *dots) Input(id uint32, in []float64) {
	if _, ok := d.pos[id]; ok {
		d.pos[id] = [2]float64{d.pos[id][0] + in[0], d.pos[id][1] + in[1]}
	}
}
func (d *dots) Step(float64) {}
func (d *dots) Write(f *game.Frame) {
	for id, p := range d.pos {
		f.Add(0, float64(id), p[0], p[1], float64(f.RTT(id)))
	}
}

func dotsSpec() game.Spec {
	return game.Spec{
		Name:   "dots",
		Tables: []game.Table{{Name: "d", Columns: []game.Column{{Name: "x"}, {Name: "y"}, {Name: "rtt", Step: 1}}}},
		Input:  []string{"dx", "dy"},
		New:    func(uint64) game.Mode { return &dots{pos: map[uint32][2]float64{}} },
	}
}

func TestSpecValidateAndCatalog(t *testing.T) {
	s := dotsSpec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Title != "dots" || s.Tables[0].Columns[0].Name != "id" || len(s.Schema().Tables[0].Columns) != 4 {
		t.Fatalf("defaults: %+v", s)
	}
	bad := dotsSpec()
	bad.Name = "Dots!"
	if err := bad.Validate(); err == nil {
		t.Fatal("a bad name passed")
	}
	bad = dotsSpec()
	bad.New = nil
	if err := bad.Validate(); err == nil {
		t.Fatal("a spec without New passed")
	}
	c, err := game.NewCatalog(dotsSpec())
	if err != nil || c.Default().Name != "dots" || c.Get("dots") == nil || c.Get("nope") != nil || len(c.All()) != 1 {
		t.Fatalf("catalog %+v, %v", c, err)
	}
	if _, err := game.NewCatalog(dotsSpec(), dotsSpec()); err == nil {
		t.Fatal("a mode given twice passed")
	}
	if _, err := game.NewCatalog(); err == nil {
		t.Fatal("an empty catalog passed")
	}
}

func TestFrameCollectsRows(t *testing.T) {
	s := dotsSpec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	m := s.New(1)
	m.Join(4)
	m.Input(4, []float64{1, -1})
	f := game.NewFrame(s.Schema())
	f.SetRTT(func(id uint32) int { return int(id) * 10 })
	m.Write(f)
	if got := f.Tables()[0]; got.Len() != 1 || got.Row(0)[0] != 4 || got.Row(0)[1] != 1 || got.Row(0)[2] != -1 || got.Row(0)[3] != 40 {
		t.Fatalf("rows %v", got.Data)
	}
	f.Reset()
	if f.Tables()[0].Len() != 0 {
		t.Fatal("Reset kept rows")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a row of the wrong width was accepted")
		}
	}()
	f.Add(0, 1, 2)
}

// TestWanderBot: the bot of a mode without one steers by its first two
// inputs, in range, and turns back toward the middle near a wall.
func TestWanderBot(t *testing.T) {
	s := dotsSpec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	s.Field = game.Field{W: 800, H: 600, R: 10}
	bot := s.NewBot(3)
	snap := &wire.Snap{Tables: map[string]wire.Rows{"d": {{7, 795, 300, 0}}}}
	var towardMiddle int
	for range 100 {
		in := bot.Input(snap, 7, s.Field)
		if len(in) != 2 || math.Abs(math.Hypot(in[0], in[1])-1) > 1e-9 {
			t.Fatalf("input %v", in)
		}
		if in[0] < 0 {
			towardMiddle++
		}
	}
	if towardMiddle < 90 {
		t.Fatalf("at the right wall the bot headed left %d times of 100", towardMiddle)
	}
}
