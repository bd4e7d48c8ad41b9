package wire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestAppendMatchesEncoder: the hand-written msgpack of the snapshot
// encoder is byte for byte what the msgpack encoder writes with compact
// integers, over the edges of every integer form and random values.
func TestAppendMatchesEncoder(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	check := func(what string, got []byte, encode func() error) {
		t.Helper()
		buf.Reset()
		if err := encode(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, buf.Bytes()) {
			t.Fatalf("%s: % x, the encoder writes % x", what, got, buf.Bytes())
		}
	}
	ints := []int64{0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, -1 << 31, -1<<31 - 1, math.MinInt64}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		ints = append(ints, rng.Int64()>>rng.IntN(64), -(rng.Int64() >> rng.IntN(64)))
	}
	for _, n := range ints {
		check("int", mpInt(nil, n), func() error { return enc.EncodeInt(n) })
		if n >= 0 {
			check("uint", mpUint(nil, uint64(n)), func() error { return enc.EncodeUint(uint64(n)) })
		}
	}
	for _, n := range []int{0, 15, 16, 65535, 65536} {
		check("array", mpArrayLen(nil, n), func() error { return enc.EncodeArrayLen(n) })
		check("map", mpMapLen(nil, n), func() error { return enc.EncodeMapLen(n) })
	}
	for _, s := range []string{"", "p", strings.Repeat("x", 31), strings.Repeat("x", 32), strings.Repeat("x", 300)} {
		check("string", mpStr(nil, s), func() error { return enc.EncodeString(s) })
	}
	for _, f := range []float32{0, -1.5, 1e-3, 3.4e38, float32(math.Inf(1))} {
		check("float32", mpFloat32(nil, f), func() error { return enc.EncodeFloat32(f) })
	}
}
