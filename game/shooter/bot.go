package shooter

import (
	"math"
	"math/rand/v2"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/wire"
)

// BotRange is how near another player must be for the bot to fire at it.
const BotRange = 450

// Bot plays the shooter: it wanders, aims at the nearest other player and
// holds fire while that one is within BotRange. Playing blind, it wanders
// about the middle, turns its aim slowly and fires about a third of the
// ticks.
type Bot struct {
	rng          *rand.Rand
	heading, aim float64
	out          []float64
}

// NewBot returns a bot whose randomness comes from seed.
func NewBot(seed uint64) *Bot {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	return &Bot{rng: rng, heading: rng.Float64() * 2 * math.Pi, out: make([]float64, nInput)}
}

// Input returns dx, dy, ax, ay and fire. The slice is reused by the next
// call.
func (b *Bot) Input(s *wire.Snap, me uint32, f game.Field) []float64 {
	var rows wire.Rows
	var mine []float64
	if s != nil {
		rows = s.Table("p")
		if mine = rows.Find(me); len(mine) <= colY {
			mine = nil
		}
	}
	out := b.out
	if mine == nil {
		b.heading = game.Wander(b.rng, b.heading, f.W/2, f.H/2, f)
		b.aim = math.Remainder(b.aim+0.05+(b.rng.Float64()-0.5)*0.05, 2*math.Pi)
		out[inAX], out[inAY] = math.Cos(b.aim), math.Sin(b.aim)
		out[inFire] = 0
		if b.rng.IntN(3) == 0 {
			out[inFire] = 1
		}
	} else {
		x, y := mine[colX], mine[colY]
		b.heading = game.Wander(b.rng, b.heading, x, y, f)
		best := math.Inf(1)
		var ax, ay float64
		for _, r := range rows {
			if len(r) <= colY || r[0] == float64(me) {
				continue
			}
			if d := math.Hypot(r[colX]-x, r[colY]-y); d < best && d > 0 {
				best, ax, ay = d, (r[colX]-x)/d, (r[colY]-y)/d
			}
		}
		out[inAX], out[inAY], out[inFire] = ax, ay, 0
		if best <= BotRange {
			out[inFire] = 1
		}
	}
	out[inDX], out[inDY] = math.Cos(b.heading), math.Sin(b.heading)
	return out
}
