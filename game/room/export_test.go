package room

import (
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/game/shooter"
)

// The room's tests run the shipped modes through the engine; the engine
// itself never imports a concrete mode.

// specOf returns a validated spec.
func specOf(s game.Spec) *game.Spec {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return &s
}

// arenaSpec is the mode of the tests that need any mode.
var arenaSpec = specOf(arena.Spec())

// shippedModes are the modes every engine test of game rules runs for.
var shippedModes = []*game.Spec{arenaSpec, specOf(shooter.Spec())}

// withMode gives cfg the arena mode and a fixed seed unless set.
func withMode(cfg Config) Config {
	if cfg.Mode == nil {
		cfg.Mode = arenaSpec
	}
	if cfg.Seed == 0 {
		cfg.Seed = 7
	}
	return cfg
}
