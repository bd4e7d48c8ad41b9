package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// A game mode's state is a set of named tables of rows of numbers
// (protocol 1.1, "Game modes"). A Schema declares them: each table's
// columns, with the precision every column travels at in delta snapshots,
// and the mode's input fields. Column 0 of every table is "id".

// Limits of a schema.
const (
	MaxTables      = 16 // tables of one mode
	MaxColumns     = 32 // columns of one table, id included
	MaxInputFields = 8  // input fields of one mode
	MaxNameBytes   = 16 // bytes of a table, column or input name
)

// Column declares one column of a table.
type Column struct {
	Name string
	// Step is the column's precision: delta snapshots carry the value as
	// a whole number of steps (rounded to the nearest). A whole-number
	// Step (1, 2, ...) makes an integer column, written as an integer in
	// full snapshots too; any other is written as a 32-bit float there.
	// Zero means DefaultStep.
	Step float64
	// Vel, when set, names the column that holds this one's rate of change
	// per second (a velocity for a position). Delta snapshots then send
	// the difference from where that rate would have taken the value,
	// which is zero for steady motion.
	Vel string
}

// DefaultStep is the precision of a column that declares none: 1/64 of a
// unit, exact in binary.
const DefaultStep = 1.0 / 64

// TableDef declares one table of a mode's state.
type TableDef struct {
	Name    string
	Columns []Column // Columns[0] is the id; its Step is always 1
	// Slots makes the rows' order meaningful: the mode writes the same
	// slots in the same order each tick and replaces a row in place (orbs,
	// pickups, a ball). Otherwise rows are keyed by id and kept sorted by
	// it (players, projectiles): rows come and go at any place.
	Slots bool
}

// Schema declares a mode's tables, in the order they are written, and its
// input fields. Use it after Validate, which fills in defaults.
type Schema struct {
	Tables []TableDef
	Input  []string
}

// reservedKeys are the keys of `snap` that no table may take.
var reservedKeys = []string{"t", "n", "st", "ack"}

// reservedInputs are the keys of client messages that no input field may
// take.
var reservedInputs = []string{"t", "seq", "n", "name", "room", "token", "resume", "text", "ts", "caps", "mode"}

// ValidName reports whether s is a valid table, column or input name:
// 1-16 characters of [a-z0-9_].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Validate checks the schema and fills in its defaults (the id column,
// default steps). It reports the first problem found.
func (s *Schema) Validate() error {
	if len(s.Tables) == 0 || len(s.Tables) > MaxTables {
		return fmt.Errorf("wire: schema: 1-%d tables", MaxTables)
	}
	// The tables are copied before defaults are filled in: a schema may
	// share them with a spec that other goroutines read.
	s.Tables = slices.Clone(s.Tables)
	seen := map[string]bool{}
	for ti := range s.Tables {
		t := &s.Tables[ti]
		t.Columns = slices.Clone(t.Columns)
		if !ValidName(t.Name) || slices.Contains(reservedKeys, t.Name) {
			return fmt.Errorf("wire: schema: table name %q: 1-16 characters of [a-z0-9_], not t, n, st or ack", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("wire: schema: table %q twice", t.Name)
		}
		seen[t.Name] = true
		if len(t.Columns) == 0 || t.Columns[0].Name != "id" {
			t.Columns = slices.Insert(t.Columns, 0, Column{Name: "id"})
		}
		if len(t.Columns) > MaxColumns {
			return fmt.Errorf("wire: schema: table %q: at most %d columns", t.Name, MaxColumns)
		}
		t.Columns[0].Step, t.Columns[0].Vel = 1, ""
		cols := map[string]int{}
		for ci := range t.Columns {
			c := &t.Columns[ci]
			if !ValidName(c.Name) {
				return fmt.Errorf("wire: schema: table %q: column name %q: 1-16 characters of [a-z0-9_]", t.Name, c.Name)
			}
			if _, dup := cols[c.Name]; dup {
				return fmt.Errorf("wire: schema: table %q: column %q twice", t.Name, c.Name)
			}
			cols[c.Name] = ci
			if c.Step == 0 {
				c.Step = DefaultStep
			}
			if !(c.Step > 0) || math.IsInf(c.Step, 0) {
				return fmt.Errorf("wire: schema: table %q: column %q: step must be > 0", t.Name, c.Name)
			}
		}
		for _, c := range t.Columns {
			if c.Vel == "" {
				continue
			}
			vi, ok := cols[c.Vel]
			if !ok || vi == 0 || c.Vel == c.Name || t.Columns[vi].Vel != "" {
				return fmt.Errorf("wire: schema: table %q: column %q: vel %q must name another column that has no vel", t.Name, c.Name, c.Vel)
			}
		}
	}
	if len(s.Input) > MaxInputFields {
		return fmt.Errorf("wire: schema: at most %d input fields", MaxInputFields)
	}
	for i, in := range s.Input {
		if !ValidName(in) || slices.Contains(reservedInputs, in) || slices.Contains(s.Input[:i], in) {
			return fmt.Errorf("wire: schema: input %q: 1-16 characters of [a-z0-9_], once, not a key of a client message (t, seq, n, ...)", in)
		}
	}
	return nil
}

// Table returns the index of the named table, or -1.
func (s *Schema) Table(name string) int {
	return slices.IndexFunc(s.Tables, func(t TableDef) bool { return t.Name == name })
}

// Column returns the index of the named column of table t, or -1.
func (t *TableDef) Column(name string) int {
	return slices.IndexFunc(t.Columns, func(c Column) bool { return c.Name == name })
}

// ColumnNames returns the table's column names, id first.
func (t *TableDef) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// IsInt reports whether the column is written as an integer.
func (c Column) IsInt() bool { return c.Step >= 1 && c.Step == math.Trunc(c.Step) }

// schemaWire is the schema as it travels in `welcome` and /api/modes:
// "tables" and "input" as the contract has them, and "layout" (an
// addition) with what a delta reader needs, table by table in order.
type schemaWire struct {
	Tables orderedTables `json:"tables" msgpack:"tables"`
	Input  []string      `json:"input" msgpack:"input"`
	Layout []layoutWire  `json:"layout" msgpack:"layout"`
}

// layoutWire is one table of a schema's "layout".
type layoutWire struct {
	Table   string            `json:"table" msgpack:"table"`
	Columns []string          `json:"columns" msgpack:"columns"`
	Step    []float64         `json:"step" msgpack:"step"`
	Vel     map[string]string `json:"vel,omitempty" msgpack:"vel,omitempty"`
	Slots   bool              `json:"slots,omitempty" msgpack:"slots,omitempty"`
}

// orderedTables is "tables": an object from table name to column names,
// its keys in the schema's order.
type orderedTables []TableDef

func (ts orderedTables) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(t.Name)
		v, _ := json.Marshal(t.ColumnNames())
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

func (ts orderedTables) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(ts)); err != nil {
		return err
	}
	for _, t := range ts {
		if err := enc.EncodeString(t.Name); err != nil {
			return err
		}
		if err := enc.Encode(t.ColumnNames()); err != nil {
			return err
		}
	}
	return nil
}

// The reading side takes the tables from "layout", which keeps their order.
func (ts *orderedTables) UnmarshalJSON([]byte) error             { return nil }
func (ts *orderedTables) DecodeMsgpack(d *msgpack.Decoder) error { return d.Skip() }

func (s *Schema) toWire() schemaWire {
	w := schemaWire{Tables: s.Tables, Input: s.Input}
	if w.Input == nil {
		w.Input = []string{}
	}
	for _, t := range s.Tables {
		l := layoutWire{Table: t.Name, Columns: t.ColumnNames(), Step: make([]float64, len(t.Columns)), Slots: t.Slots}
		for i, c := range t.Columns {
			l.Step[i] = c.Step
			if c.Vel != "" {
				if l.Vel == nil {
					l.Vel = map[string]string{}
				}
				l.Vel[c.Name] = c.Vel
			}
		}
		w.Layout = append(w.Layout, l)
	}
	return w
}

func (s *Schema) fromWire(w schemaWire) error {
	*s = Schema{Input: w.Input}
	for _, l := range w.Layout {
		if len(l.Step) != len(l.Columns) {
			return errors.New("wire: schema: layout step and columns differ in length")
		}
		t := TableDef{Name: l.Table, Slots: l.Slots}
		for i, name := range l.Columns {
			t.Columns = append(t.Columns, Column{Name: name, Step: l.Step[i], Vel: l.Vel[name]})
		}
		s.Tables = append(s.Tables, t)
	}
	return s.Validate()
}

// MarshalJSON writes the schema as /api/modes lists it.
func (s Schema) MarshalJSON() ([]byte, error) { return json.Marshal(s.toWire()) }

// UnmarshalJSON reads a schema written by MarshalJSON.
func (s *Schema) UnmarshalJSON(b []byte) error {
	var w schemaWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return s.fromWire(w)
}

// EncodeMsgpack writes the schema as `welcome` carries it.
func (s Schema) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.Encode(s.toWire()) }

// DecodeMsgpack reads a schema written by EncodeMsgpack.
func (s *Schema) DecodeMsgpack(d *msgpack.Decoder) error {
	var w schemaWire
	if err := d.Decode(&w); err != nil {
		return err
	}
	return s.fromWire(w)
}
