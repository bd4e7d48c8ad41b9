package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestSchemaTravels: a schema written for /api/modes (JSON) and for
// `welcome` (msgpack) lists its tables in order with the contract's shape,
// and reads back as the same schema.
func TestSchemaTravels(t *testing.T) {
	s := testSchema()
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(j), `{"tables":{"p":["id","x","y","vx","vy","score","rtt"],"o":["id","x","y"],"s":["id","x","y","vx","vy","heat","owner"]},"input":["dx","dy"],"layout":[{"table":"p","columns":`) {
		t.Fatalf("JSON %s", j)
	}
	var back Schema
	if err := json.Unmarshal(j, &back); err != nil || !reflect.DeepEqual(&back, s) {
		t.Fatalf("JSON read back as %+v, %v", back, err)
	}
	b, err := msgpack.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back = Schema{}
	if err := msgpack.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, s) {
		t.Fatalf("msgpack read back as %+v, %v", back, err)
	}
}

func TestSchemaValidate(t *testing.T) {
	good := func() Schema {
		return Schema{Tables: []TableDef{{Name: "p", Columns: []Column{{Name: "x", Vel: "vx"}, {Name: "vx"}}}}, Input: []string{"dx"}}
	}
	s := good()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if c := s.Tables[0].Columns; c[0] != (Column{Name: "id", Step: 1}) || c[1].Step != DefaultStep {
		t.Fatalf("defaults not filled in: %+v", c)
	}
	if len(good().Tables[0].Columns) != 2 {
		t.Fatal("Validate changed the caller's columns")
	}
	bad := map[string]func(*Schema){
		"no tables":        func(s *Schema) { s.Tables = nil },
		"reserved table":   func(s *Schema) { s.Tables[0].Name = "ack" },
		"upper case table": func(s *Schema) { s.Tables[0].Name = "P" },
		"table twice":      func(s *Schema) { s.Tables = append(s.Tables, s.Tables[0]) },
		"column twice":     func(s *Schema) { s.Tables[0].Columns = append(s.Tables[0].Columns, Column{Name: "vx"}) },
		"negative step":    func(s *Schema) { s.Tables[0].Columns[1].Step = -1 },
		"vel unknown":      func(s *Schema) { s.Tables[0].Columns[0].Vel = "nope" },
		"vel of itself":    func(s *Schema) { s.Tables[0].Columns[0].Vel = "x" },
		"vel chain":        func(s *Schema) { s.Tables[0].Columns[1].Vel = "x" },
		"reserved input":   func(s *Schema) { s.Input = []string{"seq"} },
		"input twice":      func(s *Schema) { s.Input = []string{"dx", "dx"} },
		"too many inputs":  func(s *Schema) { s.Input = strings.Split("a,b,c,d,e,f,g,h,i", ",") },
		"long input name":  func(s *Schema) { s.Input = []string{strings.Repeat("a", 17)} },
	}
	for name, spoil := range bad {
		s := good()
		spoil(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
