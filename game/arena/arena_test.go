package arena

import (
	"math"
	"reflect"
	"testing"
)

func TestSameSeedAndInputsSameState(t *testing.T) {
	run := func() *World {
		w := New(Config{Seed: 42})
		for id := uint32(1); id <= 16; id++ {
			w.AddPlayer(id)
		}
		for tick := 0; tick < 3000; tick++ {
			for id := uint32(1); id <= 16; id++ {
				a := float64(tick)*0.01 + float64(id)
				w.SetInput(id, Input{DX: math.Cos(a), DY: math.Sin(a)})
			}
			if tick == 1500 {
				w.RemovePlayer(7)
			}
			w.Step(1.0 / 30)
		}
		return w
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a.Players(), b.Players()) || !reflect.DeepEqual(a.Orbs(), b.Orbs()) {
		t.Fatal("two runs with the same seed and inputs diverged")
	}
	scored := 0
	for _, p := range a.Players() {
		scored += p.Score
	}
	if scored == 0 {
		t.Fatal("3000 ticks of 15 wandering players scored nothing")
	}
	if c := New(Config{Seed: 43}); reflect.DeepEqual(c.Orbs(), New(Config{Seed: 42}).Orbs()) {
		t.Fatal("different seeds placed the orbs alike")
	}
}

func TestMoveBySpeedOverHz(t *testing.T) {
	w := New(Config{Seed: 1, W: 1000, H: 1000, Speed: 300, Orbs: 1})
	p := w.AddPlayer(1)
	p.X, p.Y = 500, 500
	w.SetInput(1, Input{DX: 1})
	w.Step(1.0 / 30)
	p = w.Player(1)
	if math.Abs(p.X-510) > 1e-9 || p.Y != 500 || p.VX != 300 || p.VY != 0 {
		t.Fatalf("after one tick at dx=1: %+v", *p)
	}
	// A diagonal of length > 1 is clamped to length 1.
	w.SetInput(1, Input{DX: 1, DY: 1})
	w.Step(1.0 / 30)
	p = w.Player(1)
	if got := math.Hypot(p.VX, p.VY); math.Abs(got-300) > 1e-9 {
		t.Fatalf("diagonal speed %v, want 300", got)
	}
}

func TestWallsStopPlayers(t *testing.T) {
	w := New(Config{Seed: 1, W: 200, H: 100, Radius: 10, Speed: 1000})
	w.AddPlayer(1)
	w.SetInput(1, Input{DX: -1, DY: 1})
	for i := 0; i < 10; i++ {
		w.Step(0.1)
	}
	p := w.Player(1)
	if p.X != 10 || p.Y != 90 || p.VX != 0 || p.VY != 0 {
		t.Fatalf("player not held by the walls: %+v", *p)
	}
}

func TestOrbScoresAndReappears(t *testing.T) {
	w := New(Config{Seed: 5, Orbs: 1})
	orb := w.Orbs()[0]
	p := w.AddPlayer(1)
	p.X, p.Y = orb.X-20, orb.Y
	w.SetInput(1, Input{DX: 1})
	w.Step(0.05) // 12 units: within radius 16 + 8 of the orb
	if got := w.Player(1).Score; got != 1 {
		t.Fatalf("score %d, want 1", got)
	}
	if n := w.Orbs()[0]; n.ID == orb.ID || (n.X == orb.X && n.Y == orb.Y) {
		t.Fatalf("orb did not reappear: %+v -> %+v", orb, n)
	}
}

func TestNaNInputStandsStill(t *testing.T) {
	w := New(Config{Seed: 1})
	p := w.AddPlayer(1)
	x, y := p.X, p.Y
	w.SetInput(1, Input{DX: math.NaN(), DY: 1})
	w.Step(1)
	if p := w.Player(1); p.X != x || p.Y != y {
		t.Fatal("NaN input moved the player")
	}
}
