// Package shooter is a top-down shooter for Tickwire: players run about a
// walled field, aim with a second stick or the mouse, and fire short-lived
// bullets. A hit costs 20 hp; the fifth one scores a point for the shooter
// and sends the victim back at a random spot with full hp.
//
// The state travels in two keyed tables:
//
//	p  players: id, x, y, vx, vy, aim (radians), hp, score, rtt (ms)
//	b  bullets: id, x, y, vx, vy, owner (the id of the player who fired)
//
// x and y carry their velocity (Column.Vel), so steady motion, which is
// all a bullet does, is nearly free in delta snapshots. Inputs are dx, dy
// (movement), ax, ay (aim direction, (0, 0) keeps the aim) and fire (held).
package shooter

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/tickwire/tickwire/game"
)

// Table indexes, in the order of Spec().Tables.
const (
	TablePlayers = 0 // "p"
	TableBullets = 1 // "b"
)

// The field and the rules.
const (
	Width, Height = 1280, 720  // field size, units
	Speed         = 220        // player speed at full input, units/s
	Radius        = 14         // player radius
	HP            = 100        // hp at spawn
	Damage        = 20         // hp a hit takes
	Cooldown      = 0.2        // seconds between two shots of a player
	BulletSpeed   = 700        // units/s along the aim
	BulletLife    = 0.6        // seconds a bullet flies at most
	Muzzle        = Radius + 4 // a bullet starts this far from its shooter's center
	HitRadius     = Radius + 3 // a bullet this close to another player hits it
)

// Input fields, by index.
const (
	inDX, inDY, inAX, inAY, inFire = 0, 1, 2, 3, 4
	nInput                         = 5
)

// Columns of the players' table (after id).
const (
	colX, colY = 1, 2
	pCols      = 9
)

// Spec returns the shooter mode.
func Spec() game.Spec {
	pos := func(name, vel string) game.Column { return game.Column{Name: name, Vel: vel} }
	return game.Spec{
		Name:  "shooter",
		Title: "Top-down shooter",
		Tables: []game.Table{
			{Name: "p", Columns: []game.Column{{Name: "id"}, pos("x", "vx"), pos("y", "vy"),
				{Name: "vx"}, {Name: "vy"}, {Name: "aim"},
				{Name: "hp", Step: 1}, {Name: "score", Step: 1}, {Name: "rtt", Step: 1}}},
			{Name: "b", Columns: []game.Column{{Name: "id"}, pos("x", "vx"), pos("y", "vy"),
				{Name: "vx"}, {Name: "vy"}, {Name: "owner", Step: 1}}},
		},
		Input: []string{"dx", "dy", "ax", "ay", "fire"},
		Field: game.Field{W: Width, H: Height, Speed: Speed, R: Radius},
		New:   func(seed uint64) game.Mode { return New(seed) },
		Bot:   func(seed uint64) game.Bot { return NewBot(seed) },
	}
}

type player struct {
	id          uint32
	x, y        float64
	vx, vy, aim float64
	hp, score   int
	cool        float64 // seconds until the next shot
	in          [nInput]float64
}

type bullet struct {
	id, owner uint32
	x, y      float64
	vx, vy    float64
	age       float64
}

// Mode is the state of one shooter room.
type Mode struct {
	rng     *rand.Rand
	players []player // sorted by id
	bullets []bullet // in creation order, so sorted by id
	nextID  uint32   // the last bullet id given
}

// New returns an empty room whose randomness comes from seed.
func New(seed uint64) *Mode {
	return &Mode{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (m *Mode) find(id uint32) (int, bool) {
	return slices.BinarySearchFunc(m.players, id, func(p player, id uint32) int {
		return int(int64(p.id) - int64(id))
	})
}

// Join adds a player at a random spot; an id already present is ignored.
func (m *Mode) Join(id uint32) {
	if i, ok := m.find(id); !ok {
		m.players = slices.Insert(m.players, i, player{id: id})
		m.spawn(&m.players[i])
	}
}

// Leave removes a player; its bullets fly on.
func (m *Mode) Leave(id uint32) {
	if i, ok := m.find(id); ok {
		m.players = slices.Delete(m.players, i, i+1)
	}
}

// Input sets a player's input from the next Step; unknown ids are ignored.
// Values are clamped to [-1, 1], NaN counting as 0.
func (m *Mode) Input(id uint32, in []float64) {
	i, ok := m.find(id)
	if !ok {
		return
	}
	p := &m.players[i]
	p.in = [nInput]float64{}
	for j := range min(len(in), nInput) {
		if v := in[j]; !math.IsNaN(v) {
			p.in[j] = max(-1, min(1, v))
		}
	}
}

// Step advances the room by dt seconds: players move and turn, bullets fly
// and hit, then players fire; all in id order.
func (m *Mode) Step(dt float64) {
	for i := range m.players {
		p := &m.players[i]
		dx, dy := p.in[inDX], p.in[inDY]
		if l := math.Hypot(dx, dy); l > 1 {
			dx, dy = dx/l, dy/l
		}
		p.x, p.vx = moveAxis(p.x, dx*Speed, dt, Radius, Width-Radius)
		p.y, p.vy = moveAxis(p.y, dy*Speed, dt, Radius, Height-Radius)
		if ax, ay := p.in[inAX], p.in[inAY]; ax != 0 || ay != 0 {
			p.aim = math.Atan2(ay, ax)
		}
	}
	live := m.bullets[:0]
	for _, b := range m.bullets {
		ox, oy := b.x, b.y
		b.x, b.y, b.age = b.x+b.vx*dt, b.y+b.vy*dt, b.age+dt
		if !m.gone(&b, ox, oy) {
			live = append(live, b)
		}
	}
	m.bullets = live
	for i := range m.players {
		p := &m.players[i]
		p.cool = max(p.cool-dt, 0)
		if p.in[inFire] < 0.5 || p.cool > 1e-9 {
			continue
		}
		p.cool += Cooldown
		m.nextID++
		c, s := math.Cos(p.aim), math.Sin(p.aim)
		b := bullet{id: m.nextID, owner: p.id, x: p.x + Muzzle*c, y: p.y + Muzzle*s, vx: BulletSpeed * c, vy: BulletSpeed * s}
		if !m.gone(&b, b.x, b.y) { // point-blank shots hit at once
			m.bullets = append(m.bullets, b)
		}
	}
}

// gone reports whether bullet b, flying from (ox, oy) to where it is,
// hits a player, is out of the field or has flown its life.
func (m *Mode) gone(b *bullet, ox, oy float64) bool {
	return m.hit(b, ox, oy) || b.age >= BulletLife-1e-9 ||
		b.x < 0 || b.y < 0 || b.x > Width || b.y > Height
}

// hit reports whether bullet b, flying from (ox, oy) to where it is, hits
// a player other than its owner, and applies the hit to the first such
// player in id order.
func (m *Mode) hit(b *bullet, ox, oy float64) bool {
	for i := range m.players {
		p := &m.players[i]
		if p.id == b.owner || segDist2(ox, oy, b.x, b.y, p.x, p.y) > HitRadius*HitRadius {
			continue
		}
		if p.hp -= Damage; p.hp <= 0 {
			if j, ok := m.find(b.owner); ok {
				m.players[j].score++
			}
			m.spawn(p)
		}
		return true
	}
	return false
}

// segDist2 returns the squared distance from (px, py) to the segment from
// (ax, ay) to (bx, by), so that a fast bullet cannot step over a player.
func segDist2(ax, ay, bx, by, px, py float64) float64 {
	dx, dy := bx-ax, by-ay
	t := 0.0
	if l2 := dx*dx + dy*dy; l2 > 0 {
		t = max(0, min(1, ((px-ax)*dx+(py-ay)*dy)/l2))
	}
	ex, ey := ax+t*dx-px, ay+t*dy-py
	return ex*ex + ey*ey
}

// spawn puts p at a random spot at least Radius from the walls with full
// hp, standing still; its score and aim are kept.
func (m *Mode) spawn(p *player) {
	p.x = Radius + m.rng.Float64()*(Width-2*Radius)
	p.y = Radius + m.rng.Float64()*(Height-2*Radius)
	p.vx, p.vy, p.hp = 0, 0, HP
}

// moveAxis moves x by v*dt within [lo, hi]; the velocity is zeroed when a
// wall stops the move.
func moveAxis(x, v, dt, lo, hi float64) (float64, float64) {
	switch nx := x + v*dt; {
	case nx < lo:
		return lo, 0
	case nx > hi:
		return hi, 0
	default:
		return nx, v
	}
}

// Write writes the players and the bullets, each sorted by id.
func (m *Mode) Write(f *game.Frame) {
	for i := range m.players {
		p := &m.players[i]
		f.Add(TablePlayers, float64(p.id), p.x, p.y, p.vx, p.vy, p.aim,
			float64(p.hp), float64(p.score), float64(f.RTT(p.id)))
	}
	for i := range m.bullets {
		b := &m.bullets[i]
		f.Add(TableBullets, float64(b.id), b.x, b.y, b.vx, b.vy, float64(b.owner))
	}
}
