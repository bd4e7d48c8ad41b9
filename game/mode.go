// Package game is Tickwire's mode API: what a game developer writes to run
// a game of their own on Tickwire.
//
// A game mode is a Spec: a name, the tables of its state, its input fields,
// and New, which makes one Mode, the rules and state of one room. The
// engine (package game/room) owns everything else: the fixed-step clock,
// seats and resume, inputs and their validation, round trips, encoding full
// and delta snapshots, fan-out to players and spectators, and clustering.
//
// The engine calls a Mode from one goroutine, in this order at every tick:
//
//	Join / Leave / Input   as players come, go and send inputs
//	Step(dt)               advance the game by dt seconds
//	Write(frame)           write the state into the frame's tables
//
// A Mode needs no goroutine, lock, clock or network code, and must be
// deterministic: two Modes made by New with the same seed, given the same
// calls, write the same tables. Take randomness from a source seeded by
// New's seed, never from the time. A Mode that panics ends its room (the
// players get `error` and close 1001, spectators `closed` "crashed"), and
// every other room goes on.
//
// State travels as tables of rows of numbers. Column 0 of every row is its
// id; each player is the row of its table whose id is the player's id.
// Declare each column's precision (Column.Step): delta snapshots carry
// values as whole steps, and a column with a rate (Column.Vel) is sent as
// its difference from a prediction, nearly free for steady motion. Keyed
// tables (the default) hold rows that come and go, sorted by id by the
// engine; slot tables (TableDef.Slots) keep the order the mode writes.
//
// A small mode, from the examples in the repository:
//
//	func Spec() game.Spec {
//		return game.Spec{
//			Name: "tag", Title: "Tag",
//			Tables: []game.Table{{Name: "p", Columns: []game.Column{
//				{Name: "x"}, {Name: "y"}, {Name: "it", Step: 1}}}},
//			Input: []string{"dx", "dy"},
//			Field: game.Field{W: 800, H: 600, Speed: 200, R: 14},
//			New:   func(seed uint64) game.Mode { return newTag(seed) },
//		}
//	}
package game

import (
	"errors"
	"fmt"

	"github.com/tickwire/tickwire/wire"
)

// Mode is the rules and state of one room of a game. The engine calls it
// from one goroutine only.
type Mode interface {
	// Join adds a player. Ids are unique within a room and never reused.
	Join(id uint32)
	// Leave removes a player for good (a player who only lost its
	// connection keeps its place for the grace period, its input zeroed).
	Leave(id uint32)
	// Input sets a player's input: one value per declared input field, in
	// their order, each a finite number in [-1, 1] (the engine refuses
	// anything else before it reaches the mode; buttons are 0 or 1). It
	// holds from the next Step until replaced. in is valid only during the
	// call.
	Input(id uint32, in []float64)
	// Step advances the game by dt seconds (1/hz).
	Step(dt float64)
	// Write writes the state of the game into f, one f.Add per row.
	Write(f *Frame)
}

// Schema, TableDef and Column declare a mode's tables; see package wire.
type (
	Schema = wire.Schema
	Table  = wire.TableDef
	Column = wire.Column
)

// Field is what a client needs to draw a mode: the playing field's size,
// and its players' speed and radius where it has them. It travels in
// `welcome` (w, h, speed, r) and in the spectator `room` event (w, h).
type Field struct {
	W, H     float64
	Speed, R float64
}

// Spec declares a game mode.
type Spec struct {
	// Name is the mode's id on the wire: 1-16 characters of [a-z0-9_].
	Name string
	// Title is a name for people, shown by the browser client.
	Title string
	// Tables declares the state, in the order it is written.
	Tables []Table
	// Input names the input fields, each a number in [-1, 1].
	Input []string
	Field Field
	// New makes the game of one room, its randomness from seed.
	New func(seed uint64) Mode
	// Bot, when set, makes a player for demos and load tests (tickwire
	// bot, tickwire bench); without, bots wander (see NewWanderBot).
	Bot func(seed uint64) Bot
}

// Validate checks the spec and fills in its defaults (see
// wire.Schema.Validate).
func (s *Spec) Validate() error {
	if !wire.ValidName(s.Name) {
		return fmt.Errorf("game: mode name %q: 1-16 characters of [a-z0-9_]", s.Name)
	}
	if s.New == nil {
		return fmt.Errorf("game: mode %s: New is nil", s.Name)
	}
	if s.Title == "" {
		s.Title = s.Name
	}
	sc := s.Schema()
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("game: mode %s: %w", s.Name, err)
	}
	s.Tables, s.Input = sc.Tables, sc.Input
	return nil
}

// Schema returns the spec's tables and input fields as a Schema.
func (s *Spec) Schema() *Schema { return &Schema{Tables: s.Tables, Input: s.Input} }

// NewBot returns the mode's bot, or a wandering one.
func (s *Spec) NewBot(seed uint64) Bot {
	if s.Bot != nil {
		return s.Bot(seed)
	}
	return NewWanderBot(seed, s)
}

// Frame is what a Mode writes a tick's state into: one table per table of
// its spec, in the same order. The engine reuses it tick after tick.
type Frame struct {
	tables []wire.Table
	rtt    func(id uint32) int
}

// NewFrame returns an empty frame for the schema; a mode's tests use it to
// read what their Write writes.
func NewFrame(s *Schema) *Frame { return &Frame{tables: wire.NewTables(s)} }

// Add appends a row to table t (its index in the spec's Tables): the id
// first, then every other column in order. A row of the wrong width panics.
func (f *Frame) Add(t int, row ...float64) { f.tables[t].Add(row...) }

// RTT returns the round trip of a player's connection in milliseconds as
// the server measures it, or 0 while unknown or disconnected (for modes
// that show it, like arena's rtt column).
func (f *Frame) RTT(id uint32) int {
	if f.rtt == nil {
		return 0
	}
	return f.rtt(id)
}

// SetRTT sets where RTT looks round trips up (the engine's seats).
func (f *Frame) SetRTT(rtt func(id uint32) int) { f.rtt = rtt }

// Tables returns what was written since the last Reset.
func (f *Frame) Tables() []wire.Table { return f.tables }

// Reset empties every table, keeping its storage.
func (f *Frame) Reset() {
	for i := range f.tables {
		f.tables[i].Reset()
	}
}

// Catalog is the set of modes a server offers, by name, in the order
// added.
type Catalog struct {
	specs []*Spec
}

// NewCatalog validates the specs and returns them as a catalog; a name
// given twice is an error.
func NewCatalog(specs ...Spec) (*Catalog, error) {
	c := &Catalog{}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		if c.Get(s.Name) != nil {
			return nil, fmt.Errorf("game: mode %s given twice", s.Name)
		}
		c.specs = append(c.specs, &s)
	}
	if len(c.specs) == 0 {
		return nil, errors.New("game: no modes")
	}
	return c, nil
}

// Get returns the named mode, or nil.
func (c *Catalog) Get(name string) *Spec {
	for _, s := range c.specs {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// All returns the modes in the order added. The slice is the catalog's.
func (c *Catalog) All() []*Spec { return c.specs }

// Default returns the first mode: the one a room gets when none is asked
// for.
func (c *Catalog) Default() *Spec { return c.specs[0] }
