package game_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/game/shooter"
	"github.com/tickwire/tickwire/wire"
)

// play runs a mode for ticks at 30 Hz with players joining and leaving and
// each mode's own bots choosing inputs from what the mode wrote, and
// returns every tick's tables.
func play(spec game.Spec, seed uint64, ticks int) [][]wire.Table {
	m := spec.New(seed)
	f := game.NewFrame(spec.Schema())
	script := rand.New(rand.NewPCG(99, 1))
	bots := map[uint32]game.Bot{}
	var ids []uint32
	var out [][]wire.Table
	snap := &wire.Snap{Tables: map[string]wire.Rows{}}
	for n := range ticks {
		if len(ids) < 2 || script.IntN(60) == 0 && len(ids) < 12 {
			id := uint32(n + 1)
			m.Join(id)
			ids = append(ids, id)
			bots[id] = spec.NewBot(uint64(id))
		} else if script.IntN(90) == 0 {
			i := script.IntN(len(ids))
			m.Leave(ids[i])
			ids = slices.Delete(ids, i, i+1)
		}
		for _, id := range ids {
			m.Input(id, bots[id].Input(snap, id, spec.Field))
		}
		m.Step(1.0 / 30)
		f.Reset()
		m.Write(f)
		tick := make([]wire.Table, len(f.Tables()))
		for i, t := range f.Tables() {
			tick[i] = wire.Table{Cols: t.Cols, Data: slices.Clone(t.Data)}
			rows := wire.Rows{}
			for k := range t.Len() {
				rows = append(rows, tick[i].Row(k))
			}
			snap.Tables[spec.Tables[i].Name] = rows
		}
		out = append(out, tick)
	}
	return out
}

// TestShippedModesAreDeterministic: for every shipped mode, two games from
// the same seed, given the same joins, leaves and inputs (their bots'),
// write the same tables at every one of 2,000 ticks; another seed gives
// another game.
func TestShippedModesAreDeterministic(t *testing.T) {
	for _, spec := range []game.Spec{arena.Spec(), shooter.Spec()} {
		if err := spec.Validate(); err != nil {
			t.Fatal(err)
		}
		a, b, c := play(spec, 5, 2000), play(spec, 5, 2000), play(spec, 6, 2000)
		differs := false
		for n := range a {
			for i := range a[n] {
				if !slices.Equal(a[n][i].Data, b[n][i].Data) {
					t.Fatalf("%s: tick %d, table %s differs between two games of seed 5", spec.Name, n+1, spec.Tables[i].Name)
				}
				differs = differs || !slices.Equal(a[n][i].Data, c[n][i].Data)
			}
		}
		if !differs {
			t.Fatalf("%s: seeds 5 and 6 played the same game", spec.Name)
		}
	}
}
