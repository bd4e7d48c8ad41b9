package arena

import "github.com/tickwire/tickwire/wire"

// PlayerRow is a row of the arena's table p as a client reads it.
type PlayerRow struct {
	ID         uint32
	X, Y       float64
	VX, VY     float64
	Score, RTT int
}

// OrbRow is a row of the arena's table o as a client reads it.
type OrbRow struct {
	ID   uint32
	X, Y float64
}

// Tables is a snapshot as clients hold it: *wire.Snap (players) and
// *wire.SpectatorSnap (viewers) both are.
type Tables interface{ Table(name string) wire.Rows }

// Players returns the players of an arena snapshot, in id order.
func Players(s Tables) []PlayerRow {
	rows := s.Table("p")
	out := make([]PlayerRow, 0, len(rows))
	for _, r := range rows {
		if p, ok := playerRow(r); ok {
			out = append(out, p)
		}
	}
	return out
}

func playerRow(r []float64) (PlayerRow, bool) {
	if len(r) < 7 {
		return PlayerRow{}, false
	}
	return PlayerRow{ID: uint32(r[0]), X: r[1], Y: r[2], VX: r[3], VY: r[4], Score: int(r[5]), RTT: int(r[6])}, true
}

// FindPlayer returns the player id of an arena snapshot, or nil.
func FindPlayer(s Tables, id uint32) *PlayerRow {
	if p, ok := playerRow(s.Table("p").Find(id)); ok {
		return &p
	}
	return nil
}

// Orbs returns the orbs of an arena snapshot, in slot order.
func Orbs(s Tables) []OrbRow {
	rows := s.Table("o")
	out := make([]OrbRow, 0, len(rows))
	for _, r := range rows {
		if len(r) >= 3 {
			out = append(out, OrbRow{ID: uint32(r[0]), X: r[1], Y: r[2]})
		}
	}
	return out
}
