package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Delta snapshots are an addition to protocol version 1 (docs/protocol.md,
// "Delta snapshots"). A client that sends `caps:["delta"]` in `join` gets
// `delta` frames instead of `snap`: each one describes the state after a
// tick relative to a baseline, the newest snapshot the client acknowledged
// with an `ack` message, or relative to nothing (a keyframe). Positions and
// velocities are quantized to 1/DeltaScale of a unit (of a unit per second)
// and written as varints in the frame's `d` bytes.

// Message types and capabilities of delta mode.
const (
	TypeDelta = "delta" // server: a delta snapshot
	TypeAck   = "ack"   // client: acknowledges a snapshot by its tick number
	CapDelta  = "delta" // the `join` capability that asks for delta snapshots
)

// Limits of the `caps` field of `join`.
const (
	MaxCaps   = 16 // capabilities in one join
	MaxCapLen = 32 // bytes of one capability name
)

// DeltaScale is the number of quanta per unit: positions travel in 1/64
// unit and velocities in 1/64 unit per second, so a reconstructed value is
// within 1/128 of the server's (DeltaPrecision).
const DeltaScale = 64

// DeltaPrecision is the largest difference between a value the server holds
// and the value a delta client reconstructs: half a quantum.
const DeltaPrecision = 0.5 / DeltaScale

// DeltaHistory is how many recent snapshots the server keeps as baselines;
// an acknowledged snapshot older than that gets a keyframe instead.
const DeltaHistory = 64

// DeltaKeep is how many reconstructed snapshots a DeltaReceiver keeps. It is
// larger than DeltaHistory, so every baseline the server may pick is held.
const DeltaKeep = 2 * DeltaHistory

// Ack acknowledges the snapshot of tick N (a `snap` or `delta`) so that the
// server may use it as the baseline of later deltas. N = 0 asks for a
// keyframe.
type Ack struct {
	Head
	N uint64 `msgpack:"n"`
}

// Type returns TypeAck.
func (*Ack) Type() string { return TypeAck }

func (*Ack) fromClient() {}

// Delta is a delta snapshot: D holds the encoded state (see AppendDelta), Ack
// is the highest input seq applied for the receiver, as in Snap.
type Delta struct {
	Head
	D   []byte `msgpack:"d"`
	Ack uint64 `msgpack:"ack"`
}

// Type returns TypeDelta.
func (*Delta) Type() string { return TypeDelta }

func (*Delta) fromServer() {}

// HasCap reports whether caps holds the capability c.
func HasCap(caps []string, c string) bool {
	for _, x := range caps {
		if x == c {
			return true
		}
	}
	return false
}

// DeltaPlayer is one player of a DeltaState, in quanta: X, Y in 1/DeltaScale
// unit, VX, VY in 1/DeltaScale unit/s; Score and RTT as in PlayerState.
type DeltaPlayer struct {
	ID         uint32
	X, Y       int64
	VX, VY     int64
	Score, RTT int64
}

// DeltaOrb is one orb of a DeltaState, its position in quanta.
type DeltaOrb struct {
	ID   uint32
	X, Y int64
}

// DeltaState is the quantized state after tick N, the same on the server
// and on every delta client that reconstructed it. P is sorted by ID; O is in
// the order of the snapshot's `o`.
type DeltaState struct {
	N  uint64
	ST int64
	P  []DeltaPlayer
	O  []DeltaOrb
}

// Quantize converts a coordinate or velocity to quanta, rounding to the
// nearest one. NaN and infinities become 0.
func Quantize(v float64) int64 {
	q := math.Round(v * DeltaScale)
	if math.IsNaN(q) || math.IsInf(q, 0) {
		return 0
	}
	// Far beyond any arena; kept well below 2^53 for JavaScript readers.
	return int64(max(-1<<40, min(1<<40, q)))
}

// Dequantize converts quanta back to units. The result is exact.
func Dequantize(q int64) float64 { return float64(q) / DeltaScale }

// Set makes s the quantized form of a snapshot, reusing its slices.
func (s *DeltaState) Set(n uint64, st int64, p []PlayerState, o []Orb) {
	s.N, s.ST = n, st
	s.P = s.P[:0]
	for i := range p {
		ps := &p[i]
		s.P = append(s.P, DeltaPlayer{
			ID: ps.ID, X: Quantize(ps.X), Y: Quantize(ps.Y), VX: Quantize(ps.VX), VY: Quantize(ps.VY),
			Score: int64(ps.Score), RTT: int64(ps.RTT),
		})
	}
	s.O = s.O[:0]
	for i := range o {
		s.O = append(s.O, DeltaOrb{ID: o[i].ID, X: Quantize(o[i].X), Y: Quantize(o[i].Y)})
	}
}

// Snap returns s as a new Snap with the receiver's ack, the way a client
// receiving full snapshots would see it (within DeltaPrecision).
func (s *DeltaState) Snap(ack uint64) *Snap {
	m := &Snap{Head: Head{T: TypeSnap}, N: s.N, ST: s.ST, Ack: ack,
		P: make([]PlayerState, len(s.P)), O: make([]Orb, len(s.O))}
	for i, p := range s.P {
		m.P[i] = PlayerState{ID: p.ID, X: Dequantize(p.X), Y: Dequantize(p.Y),
			VX: Dequantize(p.VX), VY: Dequantize(p.VY), Score: int(p.Score), RTT: int(p.RTT)}
	}
	for i, o := range s.O {
		m.O[i] = Orb{ID: o.ID, X: Dequantize(o.X), Y: Dequantize(o.Y)}
	}
	return m
}

// Bits of a kept player's field mask: which fields follow, in this order.
const (
	deltaVX = 1 << iota
	deltaVY
	deltaX
	deltaY
	deltaScore
	deltaRTT
	deltaAll = 1<<iota - 1
)

// DeltaPredict is where a coordinate is expected after age ticks at hz, from
// its value q and velocity vb in the baseline and its velocity vc now, all in
// quanta: the velocity is taken to change evenly from vb to vc over the age
// ticks, and the last tick moved at vc. A delta carries the difference from
// this prediction, which is 0 or 1 quantum away for steady movement.
// Integers only, so every reader computes the same value:
// q + floor((2*age*vb + (age+1)*(vc-vb) + hz) / (2*hz)).
func DeltaPredict(q, vb, vc int64, age uint64, hz int) int64 {
	h := int64(max(hz, 1))
	k := int64(age)
	return q + floorDiv(2*k*vb+(k+1)*(vc-vb)+h, 2*h)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// AppendDelta appends the `d` bytes of cur relative to base to dst. A nil
// base, or one that is not older than cur, makes a keyframe (a delta from the
// empty state). hz is the room's tick rate (welcome `hz`).
//
// The bytes are unsigned varints (u, LEB128 as in protobuf) and zigzag
// varints (z, protobuf sint64):
//
//	u n, u age (n - baseline tick; 0: keyframe), z st - baseline st
//	u removed, then per removed player (ascending): u id - previous id
//	u entered, then per new player (ascending): u id - previous id,
//	  z x, z y, z vx, z vy, z score, z rtt
//	per baseline player still present (ascending): u mask, then the fields
//	  whose bits are set: 1 z vx-vx', 2 z vy-vy', 4 z x-prediction,
//	  8 z y-prediction, 16 z score-score', 32 z rtt-rtt' (' = baseline)
//	u orbs, u changed, then per changed slot (ascending):
//	  u slot - previous slot - 1 (previous starts at -1),
//	  z id - id' (id' = 0 for a slot not in the baseline), z x, z y
//
// A coordinate whose bit is clear equals its prediction (DeltaPredict).
func AppendDelta(dst []byte, base, cur *DeltaState, hz int) []byte {
	if base == nil || base.N >= cur.N {
		base = &emptyDeltaState
	}
	age := uint64(0)
	if base.N != 0 {
		age = cur.N - base.N
	}
	dst = binary.AppendUvarint(dst, cur.N)
	dst = binary.AppendUvarint(dst, age)
	dst = binary.AppendVarint(dst, cur.ST-base.ST)

	bp, cp := base.P, cur.P
	removed, entered := 0, 0
	for i, j := 0, 0; i < len(bp) || j < len(cp); {
		switch {
		case j == len(cp) || i < len(bp) && bp[i].ID < cp[j].ID:
			removed++
			i++
		case i == len(bp) || cp[j].ID < bp[i].ID:
			entered++
			j++
		default:
			i++
			j++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(removed))
	prev := uint32(0)
	for i, j := 0, 0; i < len(bp); i++ {
		for j < len(cp) && cp[j].ID < bp[i].ID {
			j++
		}
		if j == len(cp) || cp[j].ID != bp[i].ID {
			dst = binary.AppendUvarint(dst, uint64(bp[i].ID-prev))
			prev = bp[i].ID
		}
	}
	dst = binary.AppendUvarint(dst, uint64(entered))
	prev = 0
	for i, j := 0, 0; j < len(cp); j++ {
		for i < len(bp) && bp[i].ID < cp[j].ID {
			i++
		}
		if i == len(bp) || bp[i].ID != cp[j].ID {
			p := &cp[j]
			dst = binary.AppendUvarint(dst, uint64(p.ID-prev))
			prev = p.ID
			dst = binary.AppendVarint(dst, p.X)
			dst = binary.AppendVarint(dst, p.Y)
			dst = binary.AppendVarint(dst, p.VX)
			dst = binary.AppendVarint(dst, p.VY)
			dst = binary.AppendVarint(dst, p.Score)
			dst = binary.AppendVarint(dst, p.RTT)
		}
	}
	for i, j := 0, 0; i < len(bp); i++ {
		for j < len(cp) && cp[j].ID < bp[i].ID {
			j++
		}
		if j == len(cp) || cp[j].ID != bp[i].ID {
			continue
		}
		b, c := &bp[i], &cp[j]
		px := DeltaPredict(b.X, b.VX, c.VX, age, hz)
		py := DeltaPredict(b.Y, b.VY, c.VY, age, hz)
		var mask uint64
		if c.VX != b.VX {
			mask |= deltaVX
		}
		if c.VY != b.VY {
			mask |= deltaVY
		}
		if c.X != px {
			mask |= deltaX
		}
		if c.Y != py {
			mask |= deltaY
		}
		if c.Score != b.Score {
			mask |= deltaScore
		}
		if c.RTT != b.RTT {
			mask |= deltaRTT
		}
		dst = binary.AppendUvarint(dst, mask)
		if mask&deltaVX != 0 {
			dst = binary.AppendVarint(dst, c.VX-b.VX)
		}
		if mask&deltaVY != 0 {
			dst = binary.AppendVarint(dst, c.VY-b.VY)
		}
		if mask&deltaX != 0 {
			dst = binary.AppendVarint(dst, c.X-px)
		}
		if mask&deltaY != 0 {
			dst = binary.AppendVarint(dst, c.Y-py)
		}
		if mask&deltaScore != 0 {
			dst = binary.AppendVarint(dst, c.Score-b.Score)
		}
		if mask&deltaRTT != 0 {
			dst = binary.AppendVarint(dst, c.RTT-b.RTT)
		}
	}

	bo, co := base.O, cur.O
	changed := 0
	for i := range co {
		if i >= len(bo) || bo[i] != co[i] {
			changed++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(co)))
	dst = binary.AppendUvarint(dst, uint64(changed))
	last := -1
	for i := range co {
		if i < len(bo) && bo[i] == co[i] {
			continue
		}
		var was uint32
		if i < len(bo) {
			was = bo[i].ID
		}
		dst = binary.AppendUvarint(dst, uint64(i-last-1))
		last = i
		dst = binary.AppendVarint(dst, int64(co[i].ID)-int64(was))
		dst = binary.AppendVarint(dst, co[i].X)
		dst = binary.AppendVarint(dst, co[i].Y)
	}
	return dst
}

// emptyDeltaState is the baseline of keyframes; never written.
var emptyDeltaState DeltaState

// ErrDeltaBaseline means a delta refers to a baseline the reader does not
// hold. The client should send `ack` with n = 0 to get a keyframe.
var ErrDeltaBaseline = errors.New("wire: delta baseline not held")

// Caps on what one delta may describe, far above any room, so that a
// corrupt frame cannot make a reader allocate much.
const (
	maxDeltaPlayers = 1 << 12
	maxDeltaOrbs    = 1 << 14
)

// deltaReader reads varints from a delta's bytes, remembering the first
// error.
type deltaReader struct {
	b   []byte
	err error
}

func (r *deltaReader) u() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *deltaReader) z() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of items that take at least one byte each.
func (r *deltaReader) count(limit int) int {
	v := r.u()
	if r.err == nil && (v > uint64(limit) || v > uint64(len(r.b))) {
		r.err = fmt.Errorf("count %d out of range", v)
	}
	if r.err != nil {
		return 0
	}
	return int(v)
}

// DecodeDelta reconstructs into out the state described by d (the `d` bytes
// of a Delta), taking the baseline it names from baseline, which returns nil
// for a tick it does not hold (ErrDeltaBaseline). out must not be the
// baseline; its slices are reused. Malformed bytes give an error wrapping
// ErrMalformed.
func DecodeDelta(d []byte, hz int, baseline func(n uint64) *DeltaState, out *DeltaState) error {
	r := &deltaReader{b: d}
	n := r.u()
	age := r.u()
	if r.err != nil {
		return fmt.Errorf("%w: delta: %v", ErrMalformed, r.err)
	}
	base := &emptyDeltaState
	if age != 0 {
		if age >= n {
			return fmt.Errorf("%w: delta: baseline age %d at tick %d", ErrMalformed, age, n)
		}
		if base = baseline(n - age); base == nil || base.N != n-age {
			return fmt.Errorf("%w: tick %d", ErrDeltaBaseline, n-age)
		}
		if base == out {
			return errors.New("wire: DecodeDelta into its own baseline")
		}
	}
	if err := decodeDelta(r, hz, n, age, base, out); err != nil {
		return fmt.Errorf("%w: delta: %v", ErrMalformed, err)
	}
	return nil
}

func decodeDelta(r *deltaReader, hz int, n, age uint64, base, out *DeltaState) error {
	out.N = n
	out.ST = base.ST + r.z()
	bp := base.P

	// Removed players, by ascending id.
	nr := r.count(maxDeltaPlayers)
	gone := make([]uint32, nr)
	id := uint64(0)
	for i := range gone {
		gap := r.u()
		if r.err == nil && gap == 0 && i > 0 {
			return errors.New("removed ids not ascending")
		}
		id += gap
		if id > math.MaxUint32 {
			return errors.New("id out of range")
		}
		gone[i] = uint32(id)
	}
	// New players, by ascending id.
	ne := r.count(maxDeltaPlayers)
	entered := make([]DeltaPlayer, ne)
	id = 0
	for i := range entered {
		gap := r.u()
		if r.err == nil && (gap == 0 && i > 0) {
			return errors.New("new ids not ascending")
		}
		id += gap
		if id > math.MaxUint32 {
			return errors.New("id out of range")
		}
		entered[i] = DeltaPlayer{ID: uint32(id), X: r.z(), Y: r.z(), VX: r.z(), VY: r.z(), Score: r.z(), RTT: r.z()}
	}
	if r.err != nil {
		return r.err
	}
	// Players kept from the baseline, merged with the new ones by id.
	out.P = out.P[:0]
	j, g := 0, 0
	for i := range bp {
		b := &bp[i]
		if g < len(gone) && gone[g] == b.ID {
			g++
			continue
		}
		mask := r.u()
		if mask&^deltaAll != 0 {
			return fmt.Errorf("player mask %#x", mask)
		}
		c := *b
		if mask&deltaVX != 0 {
			c.VX += r.z()
		}
		if mask&deltaVY != 0 {
			c.VY += r.z()
		}
		c.X = DeltaPredict(b.X, b.VX, c.VX, age, hz)
		c.Y = DeltaPredict(b.Y, b.VY, c.VY, age, hz)
		if mask&deltaX != 0 {
			c.X += r.z()
		}
		if mask&deltaY != 0 {
			c.Y += r.z()
		}
		if mask&deltaScore != 0 {
			c.Score += r.z()
		}
		if mask&deltaRTT != 0 {
			c.RTT += r.z()
		}
		for ; j < len(entered) && entered[j].ID <= c.ID; j++ {
			if entered[j].ID == c.ID {
				return fmt.Errorf("player %d both new and kept", c.ID)
			}
			out.P = append(out.P, entered[j])
		}
		out.P = append(out.P, c)
	}
	out.P = append(out.P, entered[j:]...)
	if g != len(gone) {
		return errors.New("removed player not in the baseline")
	}

	// Orbs: slots not listed keep the baseline's orb.
	no64 := r.u()
	if r.err == nil && no64 > maxDeltaOrbs {
		return fmt.Errorf("%d orbs", no64)
	}
	no := int(no64)
	nc := r.count(no)
	if r.err != nil {
		return r.err
	}
	if no > len(base.O)+nc {
		return errors.New("orb slot missing")
	}
	out.O = out.O[:0]
	slot := -1
	for range nc {
		gap := r.u()
		if r.err != nil || gap >= uint64(no) || slot+1+int(gap) >= no {
			return errors.New("orb slot out of range")
		}
		next := slot + 1 + int(gap)
		for i := slot + 1; i < next; i++ {
			if i >= len(base.O) {
				return errors.New("orb slot missing")
			}
			out.O = append(out.O, base.O[i])
		}
		slot = next
		var was int64
		if slot < len(base.O) {
			was = int64(base.O[slot].ID)
		}
		oid := was + r.z()
		if oid < 0 || oid > math.MaxUint32 {
			return errors.New("orb id out of range")
		}
		out.O = append(out.O, DeltaOrb{ID: uint32(oid), X: r.z(), Y: r.z()})
	}
	for i := slot + 1; i < no; i++ {
		if i >= len(base.O) {
			return errors.New("orb slot missing")
		}
		out.O = append(out.O, base.O[i])
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}

// DeltaEncoder encodes `delta` frames for a room. The frame sent to a
// receiver is Frame(...) followed by that receiver's ack value (encoded as
// SnapEncoder.Ack does): `ack` is the last key of the map, as in `snap`.
//
// A DeltaEncoder is not safe for concurrent use; a room owns one.
type DeltaEncoder struct {
	d []byte
}

// Frame encodes cur relative to base (nil: a keyframe) as a `delta` map
// without its ack value and returns a new slice that the caller may hand to
// any number of receivers.
func (e *DeltaEncoder) Frame(base, cur *DeltaState, hz int) []byte {
	e.d = AppendDelta(e.d[:0], base, cur, hz)
	out := make([]byte, 0, len(e.d)+16)
	out = append(out, 0x83, 0xa1, 't', 0xa5, 'd', 'e', 'l', 't', 'a', 0xa1, 'd')
	switch n := len(e.d); {
	case n < 1<<8:
		out = append(out, 0xc4, byte(n))
	case n < 1<<16:
		out = append(out, 0xc5, byte(n>>8), byte(n))
	default:
		out = append(out, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	out = append(out, e.d...)
	return append(out, 0xa3, 'a', 'c', 'k')
}

// DeltaReceiver turns the `delta` frames of one connection back into
// snapshots. It keeps the newest DeltaKeep states it reconstructed, from
// which the server picks baselines. Not safe for concurrent use.
type DeltaReceiver struct {
	hz      int
	ring    [DeltaKeep]DeltaState
	next    int
	scratch DeltaState
	keys    int64
}

// NewDeltaReceiver returns a receiver for a room ticking at hz (welcome
// `hz`).
func NewDeltaReceiver(hz int) *DeltaReceiver { return &DeltaReceiver{hz: hz} }

// Apply reconstructs the snapshot m describes and returns it as a Snap with
// m's ack. The snapshot's tick (Snap.N) is what the client acknowledges. On
// ErrDeltaBaseline the client should acknowledge 0 to get a keyframe.
func (r *DeltaReceiver) Apply(m *Delta) (*Snap, error) {
	s, err := r.apply(m.D)
	if err != nil {
		return nil, err
	}
	return s.Snap(m.Ack), nil
}

func (r *DeltaReceiver) apply(d []byte) (*DeltaState, error) {
	if err := DecodeDelta(d, r.hz, r.find, &r.scratch); err != nil {
		return nil, err
	}
	if _, age, err := DeltaHead(d); err == nil && age == 0 {
		r.keys++
	}
	slot := &r.ring[r.next]
	r.next = (r.next + 1) % DeltaKeep
	*slot, r.scratch = r.scratch, *slot
	return slot, nil
}

// Keyframes is the number of keyframes applied.
func (r *DeltaReceiver) Keyframes() int64 { return r.keys }

func (r *DeltaReceiver) find(n uint64) *DeltaState {
	for i := range r.ring {
		if r.ring[i].N == n && n != 0 {
			return &r.ring[i]
		}
	}
	return nil
}

// DeltaHead reads the tick n of a delta's bytes and the age of its baseline
// (0 for a keyframe) without decoding the rest: enough for a load generator
// to acknowledge frames it does not rebuild.
func DeltaHead(d []byte) (n, age uint64, err error) {
	r := &deltaReader{b: d}
	n = r.u()
	age = r.u()
	if r.err != nil {
		return 0, 0, fmt.Errorf("%w: delta: %v", ErrMalformed, r.err)
	}
	return n, age, nil
}
