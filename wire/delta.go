package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Delta snapshots are an addition to protocol version 1 (docs/protocol.md,
// "Delta snapshots"). A client that sends `caps:["delta"]` in `join` gets
// `delta` frames instead of `snap`: each one describes the state after a
// tick relative to a baseline, the newest snapshot the client acknowledged
// with an `ack` message, or relative to nothing (a keyframe). Every value
// is quantized to its column's step (Column.Step) and written as varints in
// the frame's `d` bytes, table by table in the schema's order; see
// DeltaCodec.Append.

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

// DeltaTable is one table of a DeltaState: its rows row-major, every value
// in quanta of its column's step, column 0 the id.
type DeltaTable struct {
	Cols int
	Q    []int64
}

// Len returns the number of rows.
func (t *DeltaTable) Len() int {
	if t.Cols == 0 {
		return 0
	}
	return len(t.Q) / t.Cols
}

func (t *DeltaTable) row(i int) []int64 { return t.Q[i*t.Cols : (i+1)*t.Cols : (i+1)*t.Cols] }

// DeltaState is the quantized state after tick N, the same on the server
// and on every delta client that reconstructed it: one DeltaTable per table
// of the schema, keyed tables sorted by id, slot tables in slot order.
type DeltaState struct {
	N  uint64
	ST int64
	T  []DeltaTable
}

// Quantize converts v to a whole number of steps, rounding to the nearest.
// NaN and infinities become 0; the result stays within ±2^40, far beyond
// any game and well below 2^53 for JavaScript readers.
func Quantize(v, step float64) int64 {
	q := math.Round(v / step)
	if math.IsNaN(q) || math.IsInf(q, 0) {
		return 0
	}
	return int64(max(-1<<40, min(1<<40, q)))
}

// Dequantize converts q steps back to a value.
func Dequantize(q int64, step float64) float64 { return float64(q) * step }

// DeltaPredict is where a value is expected after age ticks at hz, from
// its value q and rate vb in the baseline and its rate vc now, all in
// quanta: the rate is taken to change evenly from vb to vc over the age
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

// deltaTableLayout is what the codec needs of one table.
type deltaTableLayout struct {
	cols  int
	slots bool
	steps []float64
	// order lists the non-id columns in the order of a kept row's mask
	// bits: columns that are another's rate first, then the rest, each
	// group in column order.
	order []int
	vel   []int // per column, the index of its rate column, or -1
}

// DeltaCodec quantizes, encodes and decodes the delta snapshots of one
// schema at one tick rate. It holds no state between calls and is safe for
// concurrent use.
type DeltaCodec struct {
	hz     int
	tables []deltaTableLayout
	schema *Schema
}

// NewDeltaCodec returns the codec of a validated schema for rooms ticking
// at hz (welcome `hz`).
func NewDeltaCodec(s *Schema, hz int) *DeltaCodec {
	c := &DeltaCodec{hz: hz, schema: s}
	for _, t := range s.Tables {
		l := deltaTableLayout{cols: len(t.Columns), slots: t.Slots, vel: make([]int, len(t.Columns))}
		isRate := make([]bool, len(t.Columns))
		for i, col := range t.Columns {
			l.steps = append(l.steps, col.Step)
			l.vel[i] = -1
			if col.Vel != "" {
				l.vel[i] = t.Column(col.Vel)
				isRate[l.vel[i]] = true
			}
		}
		for i := 1; i < len(t.Columns); i++ {
			if isRate[i] {
				l.order = append(l.order, i)
			}
		}
		for i := 1; i < len(t.Columns); i++ {
			if !isRate[i] {
				l.order = append(l.order, i)
			}
		}
		c.tables = append(c.tables, l)
	}
	return c
}

// Schema returns the codec's schema.
func (c *DeltaCodec) Schema() *Schema { return c.schema }

// Set makes s the quantized form of a tick's tables, reusing its storage.
func (c *DeltaCodec) Set(s *DeltaState, n uint64, st int64, tables []Table) {
	s.N, s.ST = n, st
	if len(s.T) != len(c.tables) {
		s.T = make([]DeltaTable, len(c.tables))
	}
	for ti := range c.tables {
		l, src, dst := &c.tables[ti], &tables[ti], &s.T[ti]
		dst.Cols = l.cols
		dst.Q = dst.Q[:0]
		for i := 0; i+l.cols <= len(src.Data); i += l.cols {
			row := src.Data[i : i+l.cols]
			dst.Q = append(dst.Q, int64(uint32(row[0])))
			for c := 1; c < len(row); c++ {
				dst.Q = append(dst.Q, Quantize(row[c], l.steps[c]))
			}
		}
	}
}

// Snap returns s as a new Snap with the receiver's ack, the way a client
// receiving full snapshots sees it: every value within half its column's
// step of the server's.
func (c *DeltaCodec) Snap(s *DeltaState, ack uint64) *Snap {
	m := &Snap{Head: Head{T: TypeSnap}, N: s.N, ST: s.ST, Ack: ack, Tables: make(map[string]Rows, len(c.tables))}
	for ti := range c.tables {
		l, t := &c.tables[ti], &s.T[ti]
		n := t.Len()
		vals := make([]float64, len(t.Q))
		rows := make(Rows, n)
		for i, q := range t.Q {
			col := i % l.cols
			if col == 0 {
				vals[i] = float64(q)
			} else {
				vals[i] = Dequantize(q, l.steps[col])
			}
		}
		for i := range rows {
			rows[i] = vals[i*l.cols : (i+1)*l.cols : (i+1)*l.cols]
		}
		m.Tables[c.schema.Tables[ti].Name] = rows
	}
	return m
}

// emptyDeltaState is the baseline of keyframes; never written.
var emptyDeltaState DeltaState

// baseTable returns table ti of base, or an empty one.
func baseTable(base *DeltaState, ti, cols int) *DeltaTable {
	if ti < len(base.T) {
		return &base.T[ti]
	}
	return &DeltaTable{Cols: cols}
}

// Append appends the `d` bytes of cur relative to base to dst. A nil base,
// or one that is not older than cur, makes a keyframe (a delta from the
// empty state).
//
// The bytes are unsigned varints (u, LEB128 as in protobuf) and zigzag
// varints (z, protobuf sint64). Values are in quanta of their column's step:
//
//	u n, u age (n - baseline tick; 0: keyframe), z st - baseline st
//	then each table, in the schema's order:
//
// A keyed table (rows sorted by id):
//
//	u removed, then per removed row (ascending): u id - previous id
//	u entered, then per new row (ascending): u id - previous id, then
//	  z of each other column, in column order
//	per baseline row still present (ascending): u mask, then for each
//	  bit set, in mask order, z value - reference
//
// The mask has one bit per non-id column, in mask order: the columns that
// are another column's rate (Column.Vel) first, then the others, each group
// in column order. The reference is the baseline's value, except for a
// column with a rate: DeltaPredict from its baseline value and rate and its
// current rate. A column whose bit is clear equals its reference.
//
// A slot table (rows in slot order):
//
//	u rows, u changed, then per changed slot (ascending):
//	  u slot - previous slot - 1 (previous starts at -1),
//	  z id - id' (id' = 0 for a slot not in the baseline), then z of each
//	  other column, in column order
//
// A slot is changed when any of its values differs from the baseline's
// same slot, or the baseline has no such slot.
func (c *DeltaCodec) Append(dst []byte, base, cur *DeltaState) []byte {
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
	for ti := range c.tables {
		l := &c.tables[ti]
		b, t := baseTable(base, ti, l.cols), &cur.T[ti]
		if l.slots {
			dst = appendSlots(dst, l, b, t)
		} else {
			dst = c.appendKeyed(dst, l, b, t, age)
		}
	}
	return dst
}

func (c *DeltaCodec) appendKeyed(dst []byte, l *deltaTableLayout, bt, ct *DeltaTable, age uint64) []byte {
	nb, nc := bt.Len(), ct.Len()
	bid := func(i int) int64 { return bt.Q[i*l.cols] }
	cid := func(j int) int64 { return ct.Q[j*l.cols] }
	removed, entered := 0, 0
	for i, j := 0, 0; i < nb || j < nc; {
		switch {
		case j == nc || i < nb && bid(i) < cid(j):
			removed++
			i++
		case i == nb || cid(j) < bid(i):
			entered++
			j++
		default:
			i++
			j++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(removed))
	prev := int64(0)
	for i, j := 0, 0; i < nb; i++ {
		for j < nc && cid(j) < bid(i) {
			j++
		}
		if j == nc || cid(j) != bid(i) {
			dst = binary.AppendUvarint(dst, uint64(bid(i)-prev))
			prev = bid(i)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(entered))
	prev = 0
	for i, j := 0, 0; j < nc; j++ {
		for i < nb && bid(i) < cid(j) {
			i++
		}
		if i == nb || bid(i) != cid(j) {
			row := ct.row(j)
			dst = binary.AppendUvarint(dst, uint64(row[0]-prev))
			prev = row[0]
			for _, v := range row[1:] {
				dst = binary.AppendVarint(dst, v)
			}
		}
	}
	for i, j := 0, 0; i < nb; i++ {
		for j < nc && cid(j) < bid(i) {
			j++
		}
		if j == nc || cid(j) != bid(i) {
			continue
		}
		b, cr := bt.row(i), ct.row(j)
		var diff [MaxColumns]int64 // value - reference, in mask order
		var mask uint64
		for bit, col := range l.order {
			if diff[bit] = cr[col] - c.reference(l, b, cr, col, age); diff[bit] != 0 {
				mask |= 1 << bit
			}
		}
		dst = binary.AppendUvarint(dst, mask)
		for bit := range l.order {
			if mask&(1<<bit) != 0 {
				dst = binary.AppendVarint(dst, diff[bit])
			}
		}
	}
	return dst
}

// reference is what a kept row's column is encoded against: the baseline
// value, or for a column with a rate, its prediction (which needs the
// current rate, decoded before it).
func (c *DeltaCodec) reference(l *deltaTableLayout, b, cur []int64, col int, age uint64) int64 {
	if v := l.vel[col]; v >= 0 {
		return DeltaPredict(b[col], b[v], cur[v], age, c.hz)
	}
	return b[col]
}

func appendSlots(dst []byte, l *deltaTableLayout, bt, ct *DeltaTable) []byte {
	nb, nc := bt.Len(), ct.Len()
	same := func(i int) bool { return i < nb && slices.Equal(bt.row(i), ct.row(i)) }
	changed := 0
	for i := range nc {
		if !same(i) {
			changed++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(nc))
	dst = binary.AppendUvarint(dst, uint64(changed))
	last := -1
	for i := range nc {
		if same(i) {
			continue
		}
		var was int64
		if i < nb {
			was = bt.Q[i*l.cols]
		}
		row := ct.row(i)
		dst = binary.AppendUvarint(dst, uint64(i-last-1))
		last = i
		dst = binary.AppendVarint(dst, row[0]-was)
		for _, v := range row[1:] {
			dst = binary.AppendVarint(dst, v)
		}
	}
	return dst
}

// ErrDeltaBaseline means a delta refers to a baseline the reader does not
// hold. The client should send `ack` with n = 0 to get a keyframe.
var ErrDeltaBaseline = errors.New("wire: delta baseline not held")

// maxDeltaRows caps the rows of one table of a delta, far above any room,
// so that a corrupt frame cannot make a reader allocate much.
const maxDeltaRows = 1 << 14

// count reads a count of items that take at least one byte each.
func (r *VarintReader) count(limit int) int {
	v := r.Uvarint()
	if r.err == nil && (v > uint64(limit) || v > uint64(len(r.b))) {
		r.err = fmt.Errorf("count %d out of range", v)
	}
	if r.err != nil {
		return 0
	}
	return int(v)
}

// ids reads count ascending ids written as gaps from the previous one.
func (r *VarintReader) ids(count int) ([]int64, error) {
	ids := make([]int64, count)
	id := uint64(0)
	for i := range ids {
		gap := r.Uvarint()
		if r.err == nil && gap == 0 && i > 0 {
			return nil, errors.New("ids not ascending")
		}
		id += gap
		if id > math.MaxUint32 {
			return nil, errors.New("id out of range")
		}
		ids[i] = int64(id)
	}
	return ids, r.err
}

// Decode reconstructs into out the state described by d (the `d` bytes of
// a Delta), taking the baseline it names from baseline, which returns nil
// for a tick it does not hold (ErrDeltaBaseline). out must not be the
// baseline; its storage is reused. Malformed bytes give an error wrapping
// ErrMalformed.
func (c *DeltaCodec) Decode(d []byte, baseline func(n uint64) *DeltaState, out *DeltaState) error {
	r := &VarintReader{b: d}
	n := r.Uvarint()
	age := r.Uvarint()
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
			return errors.New("wire: delta decoded into its own baseline")
		}
	}
	if err := c.decode(r, n, age, base, out); err != nil {
		return fmt.Errorf("%w: delta: %v", ErrMalformed, err)
	}
	return nil
}

func (c *DeltaCodec) decode(r *VarintReader, n, age uint64, base, out *DeltaState) error {
	out.N = n
	out.ST = base.ST + r.Varint()
	if len(out.T) != len(c.tables) {
		out.T = make([]DeltaTable, len(c.tables))
	}
	for ti := range c.tables {
		l := &c.tables[ti]
		bt, ot := baseTable(base, ti, l.cols), &out.T[ti]
		ot.Cols = l.cols
		ot.Q = ot.Q[:0]
		var err error
		if l.slots {
			err = decodeSlots(r, l, bt, ot)
		} else {
			err = c.decodeKeyed(r, l, bt, ot, age)
		}
		if err == nil {
			err = r.err
		}
		if err != nil {
			return fmt.Errorf("table %s: %w", c.schema.Tables[ti].Name, err)
		}
	}
	if len(r.b) != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}

func (c *DeltaCodec) decodeKeyed(r *VarintReader, l *deltaTableLayout, bt, ot *DeltaTable, age uint64) error {
	gone, err := r.ids(r.count(maxDeltaRows))
	if err != nil {
		return err
	}
	ne := r.count(maxDeltaRows)
	entered := make([]int64, 0, ne*l.cols)
	id := uint64(0)
	for i := range ne {
		gap := r.Uvarint()
		if r.err == nil && gap == 0 && i > 0 {
			return errors.New("new ids not ascending")
		}
		id += gap
		if id > math.MaxUint32 {
			return errors.New("id out of range")
		}
		entered = append(entered, int64(id))
		for range l.cols - 1 {
			entered = append(entered, r.Varint())
		}
	}
	if r.err != nil {
		return r.err
	}
	// Rows kept from the baseline, merged with the new ones by id.
	j, g := 0, 0
	for i := range bt.Len() {
		b := bt.row(i)
		if g < len(gone) && gone[g] == b[0] {
			g++
			continue
		}
		mask := r.Uvarint()
		if mask>>len(l.order) != 0 {
			return fmt.Errorf("row mask %#x", mask)
		}
		for ; j < ne && entered[j*l.cols] <= b[0]; j++ {
			if entered[j*l.cols] == b[0] {
				return fmt.Errorf("row %d both new and kept", b[0])
			}
			ot.Q = append(ot.Q, entered[j*l.cols:(j+1)*l.cols]...)
		}
		at := len(ot.Q)
		ot.Q = append(ot.Q, b...)
		cur := ot.Q[at:]
		for bit, col := range l.order {
			ref := c.reference(l, b, cur, col, age)
			if mask&(1<<bit) != 0 {
				ref += r.Varint()
			}
			cur[col] = ref
		}
	}
	ot.Q = append(ot.Q, entered[j*l.cols:]...)
	if g != len(gone) {
		return errors.New("removed row not in the baseline")
	}
	return nil
}

func decodeSlots(r *VarintReader, l *deltaTableLayout, bt, ot *DeltaTable) error {
	rows64 := r.Uvarint()
	if r.err == nil && rows64 > maxDeltaRows {
		return fmt.Errorf("%d slots", rows64)
	}
	rows := int(rows64)
	nc := r.count(rows)
	if r.err != nil {
		return r.err
	}
	nb := bt.Len()
	if rows > nb+nc {
		return errors.New("slot missing")
	}
	keep := func(from, to int) error {
		if from >= to {
			return nil
		}
		if to > nb {
			return errors.New("slot missing")
		}
		ot.Q = append(ot.Q, bt.Q[from*l.cols:to*l.cols]...)
		return nil
	}
	slot := -1
	for range nc {
		gap := r.Uvarint()
		if r.err != nil || gap >= uint64(rows) || slot+1+int(gap) >= rows {
			return errors.New("slot out of range")
		}
		next := slot + 1 + int(gap)
		if err := keep(slot+1, next); err != nil {
			return err
		}
		slot = next
		var was int64
		if slot < nb {
			was = bt.Q[slot*l.cols]
		}
		id := was + r.Varint()
		if id < 0 || id > math.MaxUint32 {
			return errors.New("id out of range")
		}
		ot.Q = append(ot.Q, id)
		for range l.cols - 1 {
			ot.Q = append(ot.Q, r.Varint())
		}
	}
	return keep(slot+1, rows)
}

// DeltaEncoder encodes `delta` frames for a room. The frame sent to a
// receiver is Frame(...) followed by that receiver's ack value (encoded as
// SnapEncoder.Ack does): `ack` is the last key of the map, as in `snap`.
//
// A DeltaEncoder is not safe for concurrent use; a room owns one.
type DeltaEncoder struct {
	codec *DeltaCodec
	d     []byte
}

// NewDeltaEncoder returns an encoder using codec.
func NewDeltaEncoder(codec *DeltaCodec) *DeltaEncoder { return &DeltaEncoder{codec: codec} }

// Frame encodes cur relative to base (nil: a keyframe) as a `delta` map
// without its ack value and returns a new slice that the caller may hand to
// any number of receivers.
func (e *DeltaEncoder) Frame(base, cur *DeltaState) []byte {
	e.d = e.codec.Append(e.d[:0], base, cur)
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
	codec   *DeltaCodec
	ring    [DeltaKeep]DeltaState
	next    int
	scratch DeltaState
	keys    int64
}

// NewDeltaReceiver returns a receiver for a room of the given schema
// (welcome `schema`) ticking at hz (welcome `hz`).
func NewDeltaReceiver(s *Schema, hz int) *DeltaReceiver {
	return &DeltaReceiver{codec: NewDeltaCodec(s, hz)}
}

// Apply reconstructs the snapshot m describes and returns it as a Snap with
// m's ack. The snapshot's tick (Snap.N) is what the client acknowledges. On
// ErrDeltaBaseline the client should acknowledge 0 to get a keyframe.
func (r *DeltaReceiver) Apply(m *Delta) (*Snap, error) {
	s, err := r.apply(m.D)
	if err != nil {
		return nil, err
	}
	return r.codec.Snap(s, m.Ack), nil
}

// ApplyState is Apply without building the Snap: it returns the quantized
// state, valid until DeltaKeep more frames are applied (for load
// generators that only need its tick).
func (r *DeltaReceiver) ApplyState(m *Delta) (*DeltaState, error) { return r.apply(m.D) }

func (r *DeltaReceiver) apply(d []byte) (*DeltaState, error) {
	if err := r.codec.Decode(d, r.find, &r.scratch); err != nil {
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
	r := &VarintReader{b: d}
	n = r.Uvarint()
	age = r.Uvarint()
	if r.err != nil {
		return 0, 0, fmt.Errorf("%w: delta: %v", ErrMalformed, r.err)
	}
	return n, age, nil
}
