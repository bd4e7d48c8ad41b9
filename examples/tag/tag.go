// Tag is a game mode written against Tickwire's mode API, in a module of
// its own: one player is "it" and passes it on by touching another, who
// cannot pass it back for a second. Every second spent not being it scores
// a point.
package main

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/tickwire/tickwire/game"
)

const (
	width, height = 800.0, 600.0
	speed         = 200.0 // units per second
	radius        = 14.0
	immune        = 1.0 // seconds a new "it" cannot tag back
)

// Spec declares the mode: one table of players, moved by dx and dy.
func Spec() game.Spec {
	return game.Spec{
		Name:  "tag",
		Title: "Tag",
		Tables: []game.Table{{Name: "p", Columns: []game.Column{
			{Name: "x", Vel: "vx"}, {Name: "y", Vel: "vy"}, {Name: "vx"}, {Name: "vy"},
			{Name: "it", Step: 1}, {Name: "score", Step: 1},
		}}},
		Input: []string{"dx", "dy"},
		Field: game.Field{W: width, H: height, Speed: speed, R: radius},
		New:   func(seed uint64) game.Mode { return &tag{rng: rand.New(rand.NewPCG(seed, 1))} },
	}
}

type player struct {
	id             uint32
	x, y, vx, vy   float64
	dx, dy         float64
	free, immunity float64 // seconds not it (the score), and left of immunity
}

type tag struct {
	rng     *rand.Rand
	players []player // in id order
	it      uint32   // the player who is it; 0 when nobody plays
}

func (t *tag) find(id uint32) *player {
	for i := range t.players {
		if t.players[i].id == id {
			return &t.players[i]
		}
	}
	return nil
}

func (t *tag) Join(id uint32) {
	if t.find(id) != nil {
		return
	}
	t.players = append(t.players, player{id: id,
		x: radius + t.rng.Float64()*(width-2*radius), y: radius + t.rng.Float64()*(height-2*radius)})
	if t.it == 0 {
		t.it = id
	}
}

func (t *tag) Leave(id uint32) {
	t.players = slices.DeleteFunc(t.players, func(p player) bool { return p.id == id })
	if t.it == id {
		t.it = 0
		if len(t.players) > 0 {
			t.it = t.players[t.rng.IntN(len(t.players))].id
		}
	}
}

func (t *tag) Input(id uint32, in []float64) {
	if p := t.find(id); p != nil {
		p.dx, p.dy = in[0], in[1]
		if l := math.Hypot(p.dx, p.dy); l > 1 {
			p.dx, p.dy = p.dx/l, p.dy/l
		}
	}
}

func (t *tag) Step(dt float64) {
	for i := range t.players {
		p := &t.players[i]
		p.x, p.vx = move(p.x, p.dx*speed, dt, width)
		p.y, p.vy = move(p.y, p.dy*speed, dt, height)
		p.immunity = max(0, p.immunity-dt)
		if p.id != t.it {
			p.free += dt
		}
	}
	it := t.find(t.it)
	if it == nil {
		return
	}
	for i := range t.players {
		p := &t.players[i]
		if p.id != it.id && p.immunity == 0 && math.Hypot(p.x-it.x, p.y-it.y) <= 2*radius {
			t.it, it.immunity = p.id, 0
			p.immunity = immune
			return
		}
	}
}

// move moves a coordinate within the walls, stopping at them.
func move(x, v, dt, size float64) (float64, float64) {
	switch nx := x + v*dt; {
	case nx < radius:
		return radius, 0
	case nx > size-radius:
		return size - radius, 0
	default:
		return nx, v
	}
}

func (t *tag) Write(f *game.Frame) {
	for _, p := range t.players {
		it := 0.0
		if p.id == t.it {
			it = 1
		}
		f.Add(0, float64(p.id), p.x, p.y, p.vx, p.vy, it, math.Floor(p.free))
	}
}
