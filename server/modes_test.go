package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

// The tests of this file cover game modes (protocol 1.1) end to end: a
// server offering several, the catalog it lists, players and viewers of a
// room of each, inputs checked against the mode's fields, and a mode whose
// bug ends only its own room.

// dialMode joins room auto of the mode at ts and closes the client when the
// test ends.
func (ts *testServer) dialMode(name, mode string) (*player.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return player.Dial(ctx, player.Options{URL: ts.ws, Name: name, Mode: mode})
}

func (ts *testServer) joinMode(t *testing.T, name, mode string) *player.Client {
	t.Helper()
	c, err := ts.dialMode(name, mode)
	if err != nil {
		t.Fatalf("join %s to a room of %q: %v", name, mode, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nextSnapWith returns the next snapshot of c for which ok holds, skipping
// others, or fails the test after a generous wait.
func nextSnapWith(t *testing.T, c *player.Client, what string, ok func(*wire.Snap) bool) *wire.Snap {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := next[*wire.Snap](t, c); ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot with %s within 10s", what)
		}
	}
}

// column returns the index of the named column of the schema's table, or
// fails the test.
func column(t *testing.T, s *wire.Schema, table, col string) int {
	t.Helper()
	ti := s.Table(table)
	if ti < 0 {
		t.Fatalf("schema without table %s: %+v", table, s.Tables)
	}
	ci := s.Tables[ti].Column(col)
	if ci < 0 {
		t.Fatalf("table %s without column %s: %v", table, col, s.Tables[ti].ColumnNames())
	}
	return ci
}

// tableColumns returns each table of a schema by name with its column
// names, and the tables' names in order.
func tableColumns(s *wire.Schema) (map[string][]string, []string) {
	cols := map[string][]string{}
	var order []string
	for _, td := range s.Tables {
		cols[td.Name] = td.ColumnNames()
		order = append(order, td.Name)
	}
	return cols, order
}

var (
	arenaTables = map[string][]string{
		"p": {"id", "x", "y", "vx", "vy", "score", "rtt"},
		"o": {"id", "x", "y"},
	}
	shooterTables = map[string][]string{
		"p": {"id", "x", "y", "vx", "vy", "aim", "hp", "score", "rtt"},
		"b": {"id", "x", "y", "vx", "vy", "owner"},
	}
	shooterInput = []string{"dx", "dy", "ax", "ay", "fire"}
)

// GET /api/modes lists the built-in modes, arena (the default) first, each
// with its name, title, tables (column names, id first), input fields,
// layout and field.
func TestModesAPI(t *testing.T) {
	ts := start(t, Config{})
	var body struct {
		Modes []struct {
			Name   string              `json:"name"`
			Title  string              `json:"title"`
			Tables map[string][]string `json:"tables"`
			Input  []string            `json:"input"`
			Layout []struct {
				Table   string            `json:"table"`
				Columns []string          `json:"columns"`
				Step    []float64         `json:"step"`
				Vel     map[string]string `json:"vel"`
				Slots   bool              `json:"slots"`
			} `json:"layout"`
			Field struct {
				W, H, Speed, R float64
			} `json:"field"`
		} `json:"modes"`
	}
	getJSON(t, ts.http.URL+"/api/modes", &body)
	if len(body.Modes) != 2 || body.Modes[0].Name != "arena" || body.Modes[1].Name != "shooter" {
		t.Fatalf("modes %+v, want arena then shooter", body.Modes)
	}
	for i, want := range []struct {
		tables map[string][]string
		order  []string
		input  []string
	}{
		{arenaTables, []string{"p", "o"}, []string{"dx", "dy"}},
		{shooterTables, []string{"p", "b"}, shooterInput},
	} {
		m := body.Modes[i]
		if m.Title == "" || m.Field.W <= 0 || m.Field.H <= 0 {
			t.Errorf("%s: title %q, field %+v", m.Name, m.Title, m.Field)
		}
		if fmt.Sprint(m.Tables) != fmt.Sprint(want.tables) {
			t.Errorf("%s: tables %v, want %v", m.Name, m.Tables, want.tables)
		}
		if !slices.Equal(m.Input, want.input) {
			t.Errorf("%s: input %v, want %v", m.Name, m.Input, want.input)
		}
		var order []string
		for _, l := range m.Layout {
			order = append(order, l.Table)
			if !slices.Equal(l.Columns, want.tables[l.Table]) || len(l.Step) != len(l.Columns) {
				t.Errorf("%s: layout of %s %+v", m.Name, l.Table, l)
			}
		}
		if !slices.Equal(order, want.order) {
			t.Errorf("%s: layout tables %v, want %v", m.Name, order, want.order)
		}
	}
	// The arena's layout, as the contract has it, and its field.
	am := body.Modes[0]
	const q = 1.0 / 64
	if l := am.Layout[0]; fmt.Sprint(l.Step) != fmt.Sprint([]float64{1, q, q, q, q, 1, 1}) ||
		fmt.Sprint(l.Vel) != fmt.Sprint(map[string]string{"x": "vx", "y": "vy"}) || l.Slots {
		t.Errorf("arena layout of p %+v", l)
	}
	if l := am.Layout[1]; fmt.Sprint(l.Step) != fmt.Sprint([]float64{1, q, q}) || len(l.Vel) != 0 || !l.Slots {
		t.Errorf("arena layout of o %+v", l)
	}
	if f := am.Field; f.W != 1280 || f.H != 720 || f.Speed != 240 || f.R != 16 {
		t.Errorf("arena field %+v", f)
	}
	// The arena's tables keep their order in the object too: p, then o.
	raw := getRaw(t, ts.http.URL+"/api/modes")
	if i, j := strings.Index(raw, `"tables":{"p":`), strings.Index(raw, `"o":["id","x","y"]`); i < 0 || j < i {
		t.Errorf("arena's tables not p then o: %s", raw)
	}
	// The arena's welcome carries the same schema.
	c := ts.join(t, "ana", "auto")
	if w := c.Welcome(); w.Mode != "arena" || w.Schema == nil {
		t.Fatalf("welcome mode %q schema %v", w.Mode, w.Schema)
	}
	if cols, _ := tableColumns(c.Schema()); fmt.Sprint(cols) != fmt.Sprint(arenaTables) || !slices.Equal(c.Schema().Input, []string{"dx", "dy"}) {
		t.Fatalf("arena welcome schema %v input %v", cols, c.Schema().Input)
	}
}

func getRaw(t *testing.T, url string) string {
	t.Helper()
	var raw json.RawMessage
	getJSON(t, url, &raw)
	return string(raw)
}

// A player asking for the shooter gets a room of it, with its schema;
// firing puts its bullets in table b; an arena player asking auto is not
// put in the shooter room.
func TestShooterRoomAndFiring(t *testing.T) {
	ts := start(t, Config{})
	c := ts.joinMode(t, "ana", "shooter")
	w := c.Welcome()
	if w.Mode != "shooter" || w.Schema == nil {
		t.Fatalf("welcome mode %q schema %v", w.Mode, w.Schema)
	}
	cols, order := tableColumns(c.Schema())
	if !slices.Equal(order, []string{"p", "b"}) || fmt.Sprint(cols) != fmt.Sprint(shooterTables) || !slices.Equal(c.Schema().Input, shooterInput) {
		t.Fatalf("shooter schema %v (%v) input %v", cols, order, c.Schema().Input)
	}
	s := c.Schema()
	px, owner := column(t, s, "p", "x"), column(t, s, "b", "owner")
	first := nextSnapWith(t, c, "the player", func(s *wire.Snap) bool { return s.Table("p").Find(c.ID()) != nil })
	if _, ok := first.Tables["b"]; !ok {
		t.Fatalf("snapshot without table b: %v", first.Tables)
	}
	// Aim right (left when standing so close to the right wall that a
	// bullet would leave the field at once) and fire.
	ax := 1.0
	if first.Table("p").Find(c.ID())[px] > w.W-50 {
		ax = -1
	}
	seq, err := c.Input(0, 0, ax, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	shot := nextSnapWith(t, c, "a bullet", func(s *wire.Snap) bool { return s.Ack == seq && len(s.Table("b")) > 0 })
	for _, b := range shot.Table("b") {
		if uint32(b[owner]) != c.ID() {
			t.Fatalf("bullet %v, want owner %d", b, c.ID())
		}
	}

	// An arena player is matched into an arena room, not the shooter's.
	a := ts.join(t, "ben", "auto")
	if a.Welcome().Room == w.Room || a.Welcome().Mode != "arena" {
		t.Fatalf("arena player joined %s (mode %q); the shooter room is %s", a.Welcome().Room, a.Welcome().Mode, w.Room)
	}
	if p := arena.FindPlayer(next[*wire.Snap](t, a), a.ID()); p == nil {
		t.Fatal("arena player missing from its room's snapshot")
	}
	// And a second shooter player joins the first.
	if c2 := ts.joinMode(t, "cy", "shooter"); c2.Welcome().Room != w.Room {
		t.Fatalf("second shooter player joined %s, want %s", c2.Welcome().Room, w.Room)
	}
	rooms := map[string]string{}
	for _, li := range ts.Lobby().List() {
		rooms[li.ID] = li.Mode
	}
	if len(rooms) != 2 || rooms[w.Room] != "shooter" || rooms[a.Welcome().Room] != "arena" {
		t.Fatalf("rooms %v", rooms)
	}
}

// Unknown modes are refused, by the rooms API and by join; an input is
// checked against the mode's fields: an undeclared one or a value out of
// range gets bad-message and is dropped, the session going on; a declared
// field left out counts as 0.
func TestModeAndInputRefusals(t *testing.T) {
	ts := start(t, Config{})
	resp, err := http.Post(ts.http.URL+"/api/rooms", "application/json", strings.NewReader(`{"mode":"nope"}`))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "bad-request" || e.Error.Message == "" {
		t.Fatalf("POST mode nope: %d %+v", resp.StatusCode, e)
	}
	_, err = ts.dialMode("ana", "nope")
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeNotFound || je.CloseCode != wire.CloseNotFound {
		t.Fatalf("join mode nope: %v", err)
	}
	if rooms := ts.Lobby().List(); len(rooms) != 0 {
		t.Fatalf("rooms after refusals: %+v", rooms)
	}

	c := ts.join(t, "ana", "auto")
	w := c.Welcome()
	me := func(s *wire.Snap) arena.PlayerRow {
		p := arena.FindPlayer(s, w.ID)
		if p == nil {
			t.Fatalf("own player %d missing from snap %d", w.ID, s.N)
		}
		return *p
	}
	pos := me(next[*wire.Snap](t, c))
	dir := 1.0
	if pos.X > w.W/2 {
		dir = -1 // head for the far wall
	}
	send := func(m map[string]any) {
		t.Helper()
		raw, _ := msgpackMarshal(m)
		if err := c.SendRaw(raw); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []struct {
		frame map[string]any
		field string
	}{
		{map[string]any{"t": "input", "seq": 1, "dx": dir, "dy": 0, "jump": 1}, "jump"},
		{map[string]any{"t": "input", "seq": 2, "dx": 3, "dy": 0}, "dx"},
		{map[string]any{"t": "input", "seq": 3, "jump": 0}, "jump"},
	} {
		send(bad.frame)
		if e := next[*wire.Error](t, c); e.Code != wire.CodeBadMessage || !strings.Contains(e.Msg, bad.field) {
			t.Fatalf("%v: error %+v, want bad-message about %s", bad.frame, e, bad.field)
		}
	}
	// None of them was applied: a tick after the server read them (a pong
	// answers a ping sent after them; the snapshot after the next one
	// comes from a later tick) the player stands still with ack 0.
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	next[*wire.Pong](t, c)
	next[*wire.Snap](t, c)
	if s := next[*wire.Snap](t, c); s.Ack != 0 || me(s).VX != 0 || me(s).VY != 0 {
		t.Fatalf("after refused inputs: ack %d, player %+v", s.Ack, me(s))
	}
	// The session goes on: a valid input applies.
	send(map[string]any{"t": "input", "seq": 4, "dx": dir, "dy": 0})
	s := nextSnapWith(t, c, "ack 4", func(s *wire.Snap) bool { return s.Ack == 4 })
	if p := me(s); p.VX != dir*w.Speed || p.VY != 0 {
		t.Fatalf("after a valid input: player %+v, want vx %v", p, dir*w.Speed)
	}
	// A missing field counts as 0: dy alone stops the horizontal move.
	send(map[string]any{"t": "input", "seq": 5, "dy": 0})
	s = nextSnapWith(t, c, "ack 5", func(s *wire.Snap) bool { return s.Ack == 5 })
	if p := me(s); p.VX != 0 || p.VY != 0 {
		t.Fatalf("after an input without dx: player %+v, want still", p)
	}
	noMessage[*wire.Error](t, c, 200*time.Millisecond)
	if c.Err() != nil {
		t.Fatalf("connection ended: %v", c.Err())
	}
}

// boomMode is a mode with a bug: its Step panics a few ticks after a
// player pressed "boom".
type boomMode struct {
	ids       []uint32
	pressed   bool
	countdown int
}

func (m *boomMode) Join(id uint32) { m.ids = append(m.ids, id) }
func (m *boomMode) Leave(id uint32) {
	m.ids = slices.DeleteFunc(m.ids, func(x uint32) bool { return x == id })
}
func (m *boomMode) Input(_ uint32, in []float64) {
	if in[0] == 1 && !m.pressed {
		m.pressed, m.countdown = true, 3
	}
}

func (m *boomMode) Step(float64) {
	if m.pressed {
		if m.countdown--; m.countdown <= 0 {
			panic("boom")
		}
	}
}

func (m *boomMode) Write(f *game.Frame) {
	for _, id := range m.ids {
		f.Add(0, float64(id), 1)
	}
}

func boomSpec() game.Spec {
	return game.Spec{
		Name:   "boom",
		Tables: []game.Table{{Name: "p", Columns: []game.Column{{Name: "pressed", Step: 1}}}},
		Input:  []string{"boom"},
		Field:  game.Field{W: 100, H: 100},
		New:    func(uint64) game.Mode { return &boomMode{} },
	}
}

// A mode that panics ends its own room only: its player gets an error and
// close 1001, its viewers `closed` "crashed"; a player of another room on
// the same server keeps getting snapshots, and the server still makes
// rooms of the mode.
func TestPanickingModeEndsOnlyItsRoom(t *testing.T) {
	ts := start(t, Config{Modes: []game.Spec{arena.Spec(), boomSpec()}})
	calm := ts.join(t, "ana", "auto")
	if calm.Welcome().Mode != "arena" {
		t.Fatalf("default mode %q, want arena", calm.Welcome().Mode)
	}
	keepMoving(t, calm)
	doomed := ts.joinMode(t, "ben", "boom")
	room := doomed.Welcome().Room
	if doomed.Welcome().Mode != "boom" || room == calm.Welcome().Room {
		t.Fatalf("boom player in room %s mode %q (arena room %s)", room, doomed.Welcome().Mode, calm.Welcome().Room)
	}
	next[*wire.Snap](t, doomed)
	var viewers []*spectator.Viewer
	for _, tr := range []string{spectator.SSE, spectator.Poll} {
		v := ts.watch(t, spectator.Options{Room: room, Transport: tr, PollTimeout: 5 * time.Second})
		var info wire.SpectatorRoom
		if err := json.Unmarshal(nextEvent(t, v, wire.EventRoom).Data, &info); err != nil || info.Mode != "boom" {
			t.Fatalf("%s: room event %+v %v", tr, info, err)
		}
		viewers = append(viewers, v)
	}
	before := next[*wire.Snap](t, calm)

	if _, err := doomed.Input(1); err != nil {
		t.Fatal(err)
	}
	if e := next[*wire.Error](t, doomed); e.Code != wire.CodeClosed {
		t.Fatalf("boom player got %+v, want %s", e, wire.CodeClosed)
	}
	if code := closed(t, doomed); code != websocket.CloseGoingAway {
		t.Fatalf("boom player closed with %d, want 1001", code)
	}
	for i, v := range viewers {
		var c wire.SpectatorClosed
		if err := json.Unmarshal(nextEvent(t, v, wire.EventClosed).Data, &c); err != nil || c.Reason != "crashed" {
			t.Fatalf("viewer %d: closed %+v %v", i, c, err)
		}
	}
	// The room is gone; the arena room goes on.
	deadline := time.Now().Add(5 * time.Second)
	for _, err := ts.Lobby().Room(room); err == nil; _, err = ts.Lobby().Room(room) {
		if time.Now().After(deadline) {
			t.Fatal("crashed room still listed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	last := before.N
	for range 10 {
		s := next[*wire.Snap](t, calm)
		if s.N <= last {
			t.Fatalf("arena ticks %d after %d", s.N, last)
		}
		last = s.N
	}
	if calm.Err() != nil || arena.FindPlayer(calm.Latest(), calm.ID()) == nil {
		t.Fatalf("arena player after the crash: %v", calm.Err())
	}
	// A new player of the mode gets a new room.
	again := ts.joinMode(t, "cy", "boom")
	if again.Welcome().Room == room {
		t.Fatal("joined the crashed room")
	}
	next[*wire.Snap](t, again)
}

// A viewer of a shooter room gets its mode and schema in the `room` event
// and snapshots with its tables, players in p and bullets in b.
func TestSpectatorOfShooterRoom(t *testing.T) {
	ts := start(t, Config{})
	c := ts.joinMode(t, "ana", "shooter")
	room := c.Welcome().Room
	for _, tr := range []string{spectator.SSE, spectator.Poll} {
		t.Run(tr, func(t *testing.T) {
			v := ts.watch(t, spectator.Options{Room: room, Transport: tr, PollTimeout: 5 * time.Second})
			var info wire.SpectatorRoom
			if err := json.Unmarshal(nextEvent(t, v, wire.EventRoom).Data, &info); err != nil {
				t.Fatal(err)
			}
			if info.ID != room || info.Mode != "shooter" || info.Schema == nil || info.W <= 0 {
				t.Fatalf("room event %+v", info)
			}
			cols, order := tableColumns(info.Schema)
			if !slices.Equal(order, []string{"p", "b"}) || fmt.Sprint(cols) != fmt.Sprint(shooterTables) || !slices.Equal(info.Schema.Input, shooterInput) {
				t.Fatalf("room event schema %v (%v) input %v", cols, order, info.Schema.Input)
			}
			owner := column(t, info.Schema, "b", "owner")
			// Fire (the state changes, so snapshots are published) until
			// a snapshot shows a bullet.
			var stop atomic.Bool
			done := make(chan struct{})
			defer func() { stop.Store(true); <-done }()
			go func() {
				defer close(done)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for i := 0; !stop.Load(); i++ {
					<-tick.C
					if _, err := c.Input(0, 0, float64(i%2*2-1), 0, 1); err != nil {
						return
					}
				}
			}()
			deadline := time.After(10 * time.Second)
			for {
				var e spectator.Event
				select {
				case e = <-v.Events():
				case <-deadline:
					t.Fatal("no snapshot with a bullet within 10s")
				}
				if e.Type != wire.EventSnap {
					continue
				}
				var s wire.SpectatorSnap
				if err := json.Unmarshal(e.Data, &s); err != nil {
					t.Fatalf("snap %s: %v", e.Data, err)
				}
				if _, ok := s.Tables["b"]; !ok || s.Table("p").Find(c.ID()) == nil {
					t.Fatalf("snap without table b or the player: %s", e.Data)
				}
				if len(s.Table("b")) > 0 {
					if b := s.Table("b")[0]; len(b) != len(shooterTables["b"]) || uint32(b[owner]) != c.ID() {
						t.Fatalf("bullet %v, want owner %d", b, c.ID())
					}
					return
				}
			}
		})
	}
}

// -modes picks among the modes offered, in the order it names them, the
// first being the default.
func TestPickModes(t *testing.T) {
	picked, err := pickModes(BuiltinModes(), []string{"shooter", "arena"})
	if err != nil || len(picked) != 2 || picked[0].Name != "shooter" || picked[1].Name != "arena" {
		t.Fatalf("picked %v: %v", picked, err)
	}
	for _, names := range [][]string{{"nope"}, {"arena", "nope"}, nil} {
		if _, err := pickModes(BuiltinModes(), names); err == nil {
			t.Errorf("-modes %v accepted", names)
		}
	}
	// A server offering the shooter first makes shooter rooms by default.
	ts := start(t, Config{Modes: picked})
	if c := ts.join(t, "ana", "auto"); c.Welcome().Mode != "shooter" {
		t.Fatalf("default mode %q, want shooter", c.Welcome().Mode)
	}
}
