package room

import "github.com/tickwire/tickwire/game"

func gameConfig() game.Config { return game.Config{Seed: 7} }
