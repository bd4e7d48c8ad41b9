package game

import (
	"math"
	"math/rand/v2"

	"github.com/tickwire/tickwire/wire"
)

// Bot plays a mode for demos and load tests: at each tick it is shown the
// newest state and returns the next input.
type Bot interface {
	// Input returns one value per input field of the mode, each in
	// [-1, 1]. s is the newest snapshot, or nil when the bot plays blind
	// (load generators do not decode snapshots); me is the bot's player id.
	// The returned slice may be reused by the next call.
	Input(s *wire.Snap, me uint32, f Field) []float64
}

// NewWanderBot returns the bot of a mode without one of its own: the first
// two input fields are taken as a direction that turns smoothly at random,
// and back toward the middle near the edges (the bot's row is found in the
// first table with x and y columns); any other field is a button pressed
// now and then.
func NewWanderBot(seed uint64, s *Spec) Bot {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	b := &wanderBot{rng: rng, angle: rng.Float64() * 2 * math.Pi, out: make([]float64, len(s.Input))}
	for _, t := range s.Tables {
		if x, y := t.Column("x"), t.Column("y"); x > 0 && y > 0 {
			b.table, b.x, b.y = t.Name, x, y
			break
		}
	}
	return b
}

type wanderBot struct {
	rng   *rand.Rand
	angle float64
	out   []float64
	table string // where the bot's row is, "" when no table has x and y
	x, y  int    // its columns
}

func (b *wanderBot) Input(s *wire.Snap, me uint32, f Field) []float64 {
	var row []float64
	if s != nil && b.table != "" {
		row = s.Table(b.table).Find(me)
	}
	if row != nil {
		b.angle = Wander(b.rng, b.angle, row[b.x], row[b.y], f)
	} else {
		b.angle = Wander(b.rng, b.angle, f.W/2, f.H/2, f)
	}
	for i := range b.out {
		switch i {
		case 0:
			b.out[i] = math.Cos(b.angle)
		case 1:
			b.out[i] = math.Sin(b.angle)
		default:
			if b.rng.IntN(10) == 0 {
				b.out[i] = 1 - b.out[i]
			}
		}
	}
	return b.out
}

// Wander turns a heading a little at random, and back toward the middle of
// the field when the player at (x, y) is near an edge. Bots of several
// modes share it.
func Wander(rng *rand.Rand, angle, x, y float64, f Field) float64 {
	angle += (rng.Float64() - 0.5) * 0.6
	margin := 4 * max(f.R, 8)
	if f.W > 2*margin && f.H > 2*margin && (x < margin || y < margin || x > f.W-margin || y > f.H-margin) {
		angle = math.Atan2(f.H/2-y, f.W/2-x) + (rng.Float64()-0.5)*1.5
	}
	return angle
}
