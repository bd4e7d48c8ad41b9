package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Table holds one table's rows for one tick, row-major: row i is
// Data[i*Cols : (i+1)*Cols], its column 0 the id. A room's mode writes
// them; the encoders read them.
type Table struct {
	Cols int
	Data []float64
}

// Len returns the number of rows.
func (t *Table) Len() int {
	if t.Cols == 0 {
		return 0
	}
	return len(t.Data) / t.Cols
}

// Row returns row i; it aliases the table's storage.
func (t *Table) Row(i int) []float64 { return t.Data[i*t.Cols : (i+1)*t.Cols : (i+1)*t.Cols] }

// ID returns the id of row i.
func (t *Table) ID(i int) uint32 { return uint32(t.Data[i*t.Cols]) }

// Add appends a row. It panics when the row does not have Cols values: a
// mode that writes a row of the wrong width has a bug.
func (t *Table) Add(row ...float64) {
	if len(row) != t.Cols {
		panic(fmt.Sprintf("wire: a row of %d values in a table of %d columns", len(row), t.Cols))
	}
	t.Data = append(t.Data, row...)
}

// Reset empties the table, keeping its storage.
func (t *Table) Reset() { t.Data = t.Data[:0] }

// NewTables returns one empty table per table of the schema.
func NewTables(s *Schema) []Table {
	ts := make([]Table, len(s.Tables))
	for i := range ts {
		ts[i].Cols = len(s.Tables[i].Columns)
	}
	return ts
}

// Rows are a table's rows as a client holds them: each row's values in
// the schema's column order, id first.
type Rows [][]float64

// Find returns the row with the given id, or nil.
func (r Rows) Find(id uint32) []float64 {
	for _, row := range r {
		if len(row) > 0 && row[0] == float64(id) {
			return row
		}
	}
	return nil
}

// Snap is the authoritative state after tick N: each of the mode's tables
// by name.
type Snap struct {
	Head
	N      uint64
	ST     int64
	Ack    uint64
	Tables map[string]Rows
}

// Table returns the rows of the named table (nil when absent).
func (s *Snap) Table(name string) Rows { return s.Tables[name] }

// EncodeMsgpack writes the snap as the server does: t, n, st, the tables,
// then ack.
func (s *Snap) EncodeMsgpack(enc *msgpack.Encoder) error {
	_ = enc.EncodeMapLen(4 + len(s.Tables))
	_ = enc.EncodeString("t")
	_ = enc.EncodeString(TypeSnap)
	_ = enc.EncodeString("n")
	_ = enc.EncodeUint(s.N)
	_ = enc.EncodeString("st")
	_ = enc.EncodeInt(s.ST)
	for name, rows := range s.Tables {
		_ = enc.EncodeString(name)
		if err := enc.Encode(rows); err != nil {
			return err
		}
	}
	_ = enc.EncodeString("ack")
	return enc.EncodeUint(s.Ack)
}

// DecodeMsgpack reads a snap: every key besides t, n, st and ack whose
// value is an array of arrays of numbers is a table.
func (s *Snap) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	s.Tables = make(map[string]Rows, max(n-4, 0))
	for range n {
		key, err := d.DecodeString()
		if err != nil {
			return err
		}
		switch key {
		case "t":
			s.T, err = d.DecodeString()
		case "n":
			s.N, err = d.DecodeUint64()
		case "st":
			s.ST, err = d.DecodeInt64()
		case "ack":
			s.Ack, err = d.DecodeUint64()
		default:
			var rows Rows
			if err = d.Decode(&rows); err == nil {
				s.Tables[key] = rows
			}
		}
		if err != nil {
			return fmt.Errorf("snap %s: %w", key, err)
		}
	}
	return nil
}

// SnapEncoder encodes snapshots for many receivers at once: the part shared
// by every receiver is encoded once per tick, and each receiver's `ack` is
// a few bytes appended to it. The frame sent to a receiver is
// Shared(...) followed by Ack(ack). The `ack` key is the last of the map so
// that nothing after it depends on the receiver.
//
// A SnapEncoder is not safe for concurrent use; a room owns one.
type SnapEncoder struct {
	buf []byte
	ack []byte

	schema *Schema  // the schema ints was made for
	ints   [][]bool // per table, per column: written as an integer
}

// NewSnapEncoder returns an encoder. Integers take their smallest msgpack
// form, as the msgpack encoder writes them with compact integers.
func NewSnapEncoder() *SnapEncoder { return &SnapEncoder{} }

// intColumns returns, per table of s, which columns are integers,
// computed once per schema.
func (e *SnapEncoder) intColumns(s *Schema) [][]bool {
	if e.schema != s {
		e.schema, e.ints = s, make([][]bool, len(s.Tables))
		for i, t := range s.Tables {
			e.ints[i] = make([]bool, len(t.Columns))
			for c, col := range t.Columns {
				e.ints[i][c] = col.IsInt()
			}
		}
	}
	return e.ints
}

// Shared encodes a snap without its ack value, for any number of
// receivers, each appending its own ack. The result is valid until the next
// call (receivers copy what they keep). Ids are unsigned integers, integer
// columns integers, and the other columns 32-bit floats.
func (e *SnapEncoder) Shared(n uint64, st int64, s *Schema, tables []Table) []byte {
	b := mpMapLen(e.buf[:0], 4+len(tables))
	b = append(b, 0xa1, 't', 0xa4, 's', 'n', 'a', 'p', 0xa1, 'n')
	b = mpUint(b, n)
	b = append(b, 0xa2, 's', 't')
	b = mpInt(b, st)
	ints := e.intColumns(s)
	for ti := range tables {
		t, isInt := &tables[ti], ints[ti]
		b = mpStr(b, s.Tables[ti].Name)
		rows := t.Len()
		b = mpArrayLen(b, rows)
		for i := range rows {
			row := t.Row(i)
			b = mpArrayLen(b, len(row))
			b = mpUint(b, uint64(row[0]))
			for c := 1; c < len(row); c++ {
				if isInt[c] {
					b = mpInt(b, roundInt(row[c]))
				} else {
					b = mpFloat32(b, float32(row[c]))
				}
			}
		}
	}
	e.buf = append(b, 0xa3, 'a', 'c', 'k')
	return e.buf
}

// roundInt rounds v to an integer; NaN and infinities become 0, and the
// result stays within what JavaScript reads exactly.
func roundInt(v float64) int64 {
	const limit = 1<<53 - 1
	if i := int64(v); float64(i) == v && i >= -limit && i <= limit {
		return i // already whole: the common case
	}
	r := math.Round(v)
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return 0
	}
	return int64(max(-limit, min(limit, r)))
}

// Ack encodes an ack value. The result is valid until the next call.
func (e *SnapEncoder) Ack(ack uint64) []byte {
	e.ack = mpUint(e.ack[:0], ack)
	return e.ack
}

// AppendSnapJSON appends the JSON data of a spectator `snap` event:
// {"n","st", then each table by name: [[id,...],...]}, numbers as in the
// player snapshots (floats at 32-bit precision).
func AppendSnapJSON(dst []byte, n uint64, st int64, s *Schema, tables []Table) []byte {
	dst = append(dst, `{"n":`...)
	dst = strconv.AppendUint(dst, n, 10)
	dst = append(dst, `,"st":`...)
	dst = strconv.AppendInt(dst, st, 10)
	for ti := range tables {
		t, cols := &tables[ti], s.Tables[ti].Columns
		dst = append(dst, `,"`...)
		dst = append(dst, s.Tables[ti].Name...)
		dst = append(dst, `":[`...)
		for i := range t.Len() {
			row := t.Row(i)
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			dst = strconv.AppendUint(dst, uint64(row[0]), 10)
			for c := 1; c < len(row); c++ {
				dst = append(dst, ',')
				if cols[c].IsInt() {
					dst = strconv.AppendInt(dst, roundInt(row[c]), 10)
				} else {
					dst = appendFloat32(dst, row[c])
				}
			}
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendFloat32 writes v rounded to float32 in its shortest form; values
// JSON cannot hold (NaN, infinities) are written as 0.
func appendFloat32(dst []byte, v float64) []byte {
	f := float32(v)
	if f != f || f > 3.4e38 || f < -3.4e38 {
		return append(dst, '0')
	}
	return strconv.AppendFloat(dst, float64(f), 'f', -1, 32)
}

// SpectatorSnap is the data of a spectator `snap` event as a viewer decodes
// it; the server writes it with AppendSnapJSON.
type SpectatorSnap struct {
	N      uint64
	ST     int64
	Tables map[string]Rows
}

// Table returns the rows of the named table (nil when absent).
func (s *SpectatorSnap) Table(name string) Rows { return s.Tables[name] }

// UnmarshalJSON reads n, st and every table.
func (s *SpectatorSnap) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m["n"] == nil || m["st"] == nil {
		return errors.New("wire: spectator snap without n or st")
	}
	*s = SpectatorSnap{Tables: make(map[string]Rows, len(m))}
	for k, v := range m {
		var err error
		switch k {
		case "n":
			err = json.Unmarshal(v, &s.N)
		case "st":
			err = json.Unmarshal(v, &s.ST)
		default:
			var rows Rows
			if json.Unmarshal(v, &rows) == nil {
				s.Tables[k] = rows
			}
		}
		if err != nil {
			return fmt.Errorf("wire: spectator snap %s: %w", k, err)
		}
	}
	return nil
}
