// Package arena is Tickwire's first game mode, the orb arena: players move
// at a fixed speed by their input vector inside walls, and touching an orb
// scores a point and makes the orb reappear elsewhere.
//
// Its state is two tables, exactly as protocol version 1 has them:
// p [id,x,y,vx,vy,score,rtt] (players, keyed) and o [id,x,y] (orbs, slots in
// a fixed order, each replaced in place when collected). Its input is dx, dy.
//
// The rules are pure and deterministic: a World built from the same Config
// (seed included), given the same calls, reaches the same state. There is no
// network, no goroutine and no wall clock here. A World is not safe for
// concurrent use; one goroutine owns it.
package arena

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/tickwire/tickwire/game"
)

// Name is the mode's name on the wire.
const Name = "arena"

// Indexes of the arena's tables in its spec.
const (
	TablePlayers = 0 // p: [id,x,y,vx,vy,score,rtt]
	TableOrbs    = 1 // o: [id,x,y]
)

// Spec returns the arena mode with the default Config.
func Spec() game.Spec { return SpecWith(Config{}) }

// SpecWith returns the arena mode for a Config (its Seed is replaced by
// each room's).
func SpecWith(cfg Config) game.Spec {
	cfg = cfg.withDefaults()
	return game.Spec{
		Name:  Name,
		Title: "Orb arena",
		Tables: []game.Table{
			{Name: "p", Columns: []game.Column{
				{Name: "id"}, {Name: "x", Vel: "vx"}, {Name: "y", Vel: "vy"}, {Name: "vx"}, {Name: "vy"},
				{Name: "score", Step: 1}, {Name: "rtt", Step: 1},
			}},
			{Name: "o", Slots: true, Columns: []game.Column{{Name: "id"}, {Name: "x"}, {Name: "y"}}},
		},
		Input: []string{"dx", "dy"},
		Field: game.Field{W: cfg.W, H: cfg.H, Speed: cfg.Speed, R: cfg.Radius},
		New: func(seed uint64) game.Mode {
			c := cfg
			c.Seed = seed
			return &mode{w: New(c)}
		},
	}
}

// mode is a World behind the mode API.
type mode struct{ w *World }

func (m *mode) Join(id uint32)  { m.w.AddPlayer(id) }
func (m *mode) Leave(id uint32) { m.w.RemovePlayer(id) }
func (m *mode) Step(dt float64) { m.w.Step(dt) }

func (m *mode) Input(id uint32, in []float64) {
	m.w.SetInput(id, Input{DX: in[0], DY: in[1]})
}

func (m *mode) Write(f *game.Frame) {
	for i := range m.w.players {
		p := &m.w.players[i]
		f.Add(TablePlayers, float64(p.ID), p.X, p.Y, p.VX, p.VY, float64(p.Score), float64(f.RTT(p.ID)))
	}
	for _, o := range m.w.orbs {
		f.Add(TableOrbs, float64(o.ID), o.X, o.Y)
	}
}

// Config sets the arena. Zero fields take the defaults below.
type Config struct {
	W, H      float64 // arena size in units (1280 x 720)
	Speed     float64 // units per second at full input (240)
	Radius    float64 // player radius (16)
	Orbs      int     // orbs in play (12)
	OrbRadius float64 // orb radius (8)
	Seed      uint64  // seed of the world's random numbers
}

func (c Config) withDefaults() Config {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.W, 1280)
	def(&c.H, 720)
	def(&c.Speed, 240)
	def(&c.Radius, 16)
	def(&c.OrbRadius, 8)
	if c.Orbs <= 0 {
		c.Orbs = 12
	}
	return c
}

// Input is a movement intent; Step clamps the vector to length 1.
type Input struct{ DX, DY float64 }

// Player is one player's state.
type Player struct {
	ID     uint32
	X, Y   float64
	VX, VY float64 // velocity of the last step, units per second
	Score  int
	Input  Input // applied at every step until replaced
}

// Orb is a collectible. It gets a new ID each time it reappears.
type Orb struct {
	ID   uint32
	X, Y float64
}

// World is the state of one arena.
type World struct {
	cfg     Config
	rng     *rand.Rand
	players []Player // sorted by ID
	orbs    []Orb
	nextOrb uint32
}

// New returns a world with its orbs placed.
func New(cfg Config) *World {
	cfg = cfg.withDefaults()
	w := &World{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	w.orbs = make([]Orb, cfg.Orbs)
	for i := range w.orbs {
		w.orbs[i] = w.newOrb()
	}
	return w
}

// Config returns the world's settings, defaults filled in.
func (w *World) Config() Config { return w.cfg }

// Players returns the players sorted by ID. The slice is the world's own:
// read it, don't keep it across calls that change the world.
func (w *World) Players() []Player { return w.players }

// Orbs returns the orbs in play, with the same caveat as Players.
func (w *World) Orbs() []Orb { return w.orbs }

// Player returns the player with the given ID, or nil.
func (w *World) Player(id uint32) *Player {
	i, ok := w.find(id)
	if !ok {
		return nil
	}
	return &w.players[i]
}

func (w *World) find(id uint32) (int, bool) {
	return slices.BinarySearchFunc(w.players, id, func(p Player, id uint32) int {
		return int(int64(p.ID) - int64(id))
	})
}

// AddPlayer places a new player at a random free-looking spot and returns
// it. Adding an ID that is already present returns the existing player.
func (w *World) AddPlayer(id uint32) *Player {
	i, ok := w.find(id)
	if !ok {
		x, y := w.randomPoint(w.cfg.Radius)
		w.players = slices.Insert(w.players, i, Player{ID: id, X: x, Y: y})
	}
	return &w.players[i]
}

// RemovePlayer removes a player; removing an absent one does nothing.
func (w *World) RemovePlayer(id uint32) {
	if i, ok := w.find(id); ok {
		w.players = slices.Delete(w.players, i, i+1)
	}
}

// SetInput sets the input a player moves by from the next step on.
func (w *World) SetInput(id uint32, in Input) {
	if p := w.Player(id); p != nil {
		p.Input = in
	}
}

// Step advances the world by dt seconds: every player moves by its input
// (clamped to length 1) at Speed, stopped by the walls, then collects the
// orbs it touches, in ID order.
func (w *World) Step(dt float64) {
	r := w.cfg.Radius
	for i := range w.players {
		p := &w.players[i]
		dx, dy := clampUnit(p.Input.DX, p.Input.DY)
		vx, vy := dx*w.cfg.Speed, dy*w.cfg.Speed
		p.X, vx = moveAxis(p.X, vx, dt, r, w.cfg.W-r)
		p.Y, vy = moveAxis(p.Y, vy, dt, r, w.cfg.H-r)
		p.VX, p.VY = vx, vy
	}
	reach := r + w.cfg.OrbRadius
	for i := range w.players {
		p := &w.players[i]
		for j := range w.orbs {
			o := &w.orbs[j]
			if dx, dy := o.X-p.X, o.Y-p.Y; dx*dx+dy*dy <= reach*reach {
				p.Score++
				*o = w.newOrb()
			}
		}
	}
}

// clampUnit scales (dx, dy) down to length 1 when it is longer; NaN
// components count as 0.
func clampUnit(dx, dy float64) (float64, float64) {
	if math.IsNaN(dx) || math.IsNaN(dy) {
		return 0, 0
	}
	if l := math.Hypot(dx, dy); l > 1 {
		return dx / l, dy / l
	}
	return dx, dy
}

// moveAxis moves x by v*dt within [lo, hi]; the velocity is zeroed when a
// wall stops the move.
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

func (w *World) newOrb() Orb {
	w.nextOrb++
	x, y := w.randomPoint(w.cfg.OrbRadius)
	return Orb{ID: w.nextOrb, X: x, Y: y}
}

// randomPoint returns a point at least margin away from the walls.
func (w *World) randomPoint(margin float64) (float64, float64) {
	return margin + w.rng.Float64()*(w.cfg.W-2*margin), margin + w.rng.Float64()*(w.cfg.H-2*margin)
}
