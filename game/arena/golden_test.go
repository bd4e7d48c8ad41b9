package arena_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

// TestFramesMatchTheRecordedSession replays a scripted session of 600 ticks
// (joins, leaves, inputs, round trips) through the arena mode and the
// generic encoders, and compares every frame, byte for byte, with what the
// arena-only encoders of protocol version 1 wrote for the same session
// (testdata/arena-session.golden.gz, recorded before the arena became a
// mode): full snapshots with their ack, spectator JSON, keyframes and
// deltas against baselines 1 to 63 ticks old.
func TestFramesMatchTheRecordedSession(t *testing.T) {
	golden := readGolden(t)
	spec := arena.Spec()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	schema := spec.Schema()
	m := spec.New(7)
	frame := game.NewFrame(schema)
	var n uint64
	frame.SetRTT(func(id uint32) int { return int(id*7+uint32(n%5)) % 90 })
	rng := rand.New(rand.NewPCG(1, 2))
	enc := wire.NewSnapEncoder()
	codec := wire.NewDeltaCodec(schema, 30)
	denc := wire.NewDeltaEncoder(codec)
	var hist [64]wire.DeltaState
	var ids []uint32
	next := uint32(0)
	frames := 0
	check := func(what string, got []byte) {
		t.Helper()
		l, k := binary.Uvarint(golden)
		if k <= 0 || uint64(len(golden)-k) < l {
			t.Fatalf("tick %d %s: the recording ends", n, what)
		}
		want := golden[k : k+int(l)]
		golden = golden[k+int(l):]
		if !bytes.Equal(got, want) {
			t.Fatalf("tick %d %s differs:\n got %x\nwant %x", n, what, got, want)
		}
		frames++
	}
	for n = 1; n <= 600; n++ {
		switch {
		case len(ids) < 3 || rng.IntN(40) == 0 && len(ids) < 16:
			next++
			m.Join(next)
			ids = append(ids, next)
		case rng.IntN(50) == 0:
			i := rng.IntN(len(ids))
			m.Leave(ids[i])
			ids = append(ids[:i], ids[i+1:]...)
		}
		for _, id := range ids {
			if rng.IntN(4) == 0 {
				m.Input(id, []float64{rng.Float64()*2 - 1, rng.Float64()*2 - 1})
			}
		}
		m.Step(1.0 / 30)
		frame.Reset()
		m.Write(frame)
		tables := frame.Tables()
		st := int64(1_700_000_000_000 + n*33)
		check("snap", append(bytes.Clone(enc.Shared(n, st, schema, tables)), enc.Ack(n*3)...))
		check("spectator snap", wire.AppendSnapJSON(nil, n, st, schema, tables))
		cur := &hist[n%64]
		codec.Set(cur, n, st, tables)
		check("keyframe", denc.Frame(nil, cur))
		for _, age := range []uint64{1, 2, 5, 17, 63} {
			if age < n {
				check("delta", denc.Frame(&hist[(n-age)%64], cur))
			}
		}
	}
	if len(golden) != 0 {
		t.Fatalf("%d bytes of the recording left over", len(golden))
	}
	t.Logf("%d frames identical", frames)
}

func readGolden(t *testing.T) []byte {
	f, err := os.Open("testdata/arena-session.golden.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
