package web_test

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/server"
)

// The browser client with every game mode: the lobby picks one, and the
// page plays and watches arena, shooter and a mode it has never heard of
// (drawn by the generic renderer), from the schema the server sends.

// fieldToPage converts a point of the field (canvas pixels) to the page's
// viewport coordinates, where mouse events are dispatched.
func (tb *tab) fieldToPage(x, y float64) (float64, float64) {
	tb.t.Helper()
	p := eval[struct{ X, Y float64 }](tb, fmt.Sprintf(`(() => {
		const c = document.querySelector("#canvas"), r = c.getBoundingClientRect();
		return { x: r.left + c.clientLeft + %f * c.clientWidth / c.width, y: r.top + c.clientTop + %f * c.clientHeight / c.height };
	})()`, x, y))
	return p.X, p.Y
}

// mouse dispatches a mouse event at a point of the field.
func (tb *tab) mouse(typ input.DispatchMouseEventType, x, y float64, opts ...chromedp.MouseOption) {
	tb.t.Helper()
	px, py := tb.fieldToPage(x, y)
	tb.do(chromedp.MouseEvent(typ, px, py, opts...))
}

// drawnAt reports whether the canvas shows something other than the
// field's background (and grid) at a point of the field.
func (tb *tab) drawnAt(x, y float64) bool {
	tb.t.Helper()
	return eval[bool](tb, fmt.Sprintf(`(() => {
		const [r, g, b] = document.querySelector("#canvas").getContext("2d").getImageData(%d, %d, 1, 1).data;
		return Math.abs(r - 0x0b) + Math.abs(g - 0x10) + Math.abs(b - 0x1a) > 60;
	})()`, int(x), int(y)))
}

// waitDrawnAt waits until the canvas shows something at a point.
func (tb *tab) waitDrawnAt(what string, x, y float64) {
	tb.t.Helper()
	eventually(tb.t, what, func() bool { return tb.drawnAt(x, y) })
}

// TestLobbyPicksAMode: the lobby lists the server's modes and each room's
// mode, creates a room of the mode picked, and quick play finds a room of
// that mode.
func TestLobbyPicksAMode(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.joinMode(t, "bot", "auto", "shooter")
	shooterRoom := bot.Welcome().Room
	arenaRoom := e.join(t, "cleo", "auto").Welcome().Room
	tb := newTab(t)

	tb.navigate(e.url + "/")
	s := tb.waitState("modes and rooms listed", func(s pageState) bool {
		return len(s.Modes) >= 2 && len(s.Rooms) >= 2
	})
	if !slices.Contains(s.Modes, "arena") || !slices.Contains(s.Modes, "shooter") {
		t.Fatalf("page lists modes %v", s.Modes)
	}
	for room, mode := range map[string]string{shooterRoom: "shooter", arenaRoom: "arena"} {
		sel := `#rooms tr[data-room="` + room + `"][data-mode="` + mode + `"]`
		tb.do(chromedp.WaitVisible(chromedp.CSS(sel)))
		if got := tb.text(sel + " td.mode"); got == "" {
			t.Errorf("room %s shows no mode", room)
		}
	}
	if got := tb.text(`#rooms tr[data-room="` + shooterRoom + `"] td.mode`); got != "Top-down shooter" {
		t.Errorf("shooter room's mode shown as %q", got)
	}

	// Create a shooter room.
	tb.do(
		chromedp.SetValue(chromedp.CSS("#mode-select"), "shooter"),
		chromedp.SendKeys(chromedp.CSS("#name-input"), "ana"),
		chromedp.Click(chromedp.CSS("#create-room")),
	)
	s = tb.waitState("joined the created room and drew it", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0 && s.Renderer != ""
	})
	if s.Game.Mode != "shooter" || s.Game.Room == shooterRoom || s.Renderer != "shooter" {
		t.Fatalf("created room %s of mode %q, renderer %q; want a new shooter room", s.Game.Room, s.Game.Mode, s.Renderer)
	}
	var list struct {
		Rooms []roomInfo `json:"rooms"`
	}
	getJSON(t, e.url+"/api/rooms", &list)
	if !slices.ContainsFunc(list.Rooms, func(r roomInfo) bool { return r.ID == s.Game.Room && r.Mode == "shooter" }) {
		t.Errorf("server does not list the created room %s as shooter: %+v", s.Game.Room, list.Rooms)
	}

	// Quick play remembers the mode and joins a room of it.
	tb.navigate(e.url + "/")
	tb.waitState("lobby", func(s pageState) bool { return s.View == "lobby" && len(s.Modes) >= 2 })
	if v := eval[string](tb, `document.querySelector("#mode-select").value`); v != "shooter" {
		t.Errorf("mode not remembered: %q", v)
	}
	tb.do(chromedp.SetValue(chromedp.CSS("#mode-select"), "arena"))
	tb.do(chromedp.Click(chromedp.CSS("#quick-play")))
	s = tb.waitState("quick play", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected"
	})
	if s.Game.Mode != "arena" || s.Game.Room != arenaRoom {
		t.Errorf("quick play in arena joined room %s of mode %q; want %s", s.Game.Room, s.Game.Mode, arenaRoom)
	}
	if loc := eval[string](tb, "location.search"); loc != "?room="+arenaRoom+"&name=ana" {
		t.Errorf("link after quick play %q", loc)
	}
}

// TestPlayShooter: a link joins a shooter room; the keys move the page's
// player, the mouse aims it, and a mouse button or Space fires bullets,
// all as a Go bot in the room sees them.
func TestPlayShooter(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.joinMode(t, "bot", "auto", "shooter")
	room := bot.Welcome().Room
	w := bot.Welcome()
	tb := newTab(t)

	tb.navigate(e.url + "/?room=auto&mode=shooter&name=ana")
	s := tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0 && s.Renderer != ""
	})
	if s.Game.Room != room || s.Game.Mode != "shooter" || s.Renderer != "shooter" || s.Game.PlayerTable != "p" {
		t.Fatalf("page in room %q, mode %q, renderer %q, player table %q; want the bot's shooter room", s.Game.Room, s.Game.Mode, s.Renderer, s.Game.PlayerTable)
	}
	if want := []string{"dx", "dy", "ax", "ay", "fire"}; !slices.Equal(s.Game.Schema.Input, want) {
		t.Errorf("page's schema input %v, want %v", s.Game.Schema.Input, want)
	}
	if loc := eval[string](tb, "location.search"); loc != "?room="+room+"&name=ana" {
		t.Errorf("link after joining %q", loc)
	}
	id := s.Game.ID
	me := findRow(s.Game.Tables["p"], id)
	if me == nil || me["hp"] != 100 {
		t.Fatalf("page's own row %v", me)
	}
	// The bot stands on the canvas.
	b := s.Game.Tables["p"]
	if botRow := findRow(b, bot.ID()); botRow == nil {
		t.Fatalf("no bot in the page's players %v", b)
	} else {
		tb.waitDrawnAt("the bot drawn", botRow["x"], botRow["y"])
	}

	// Keys move.
	sign := steerPage(t, tb, bot, id, me["x"], w.W)
	// Once the page has sent its stop and the server applied it, page and
	// bot agree on where the player stands.
	s = tb.waitState("stopped and reconciled", func(s pageState) bool {
		p := findRow(s.Game.Tables["p"], id)
		return s.Game.LastInput["dx"] == 0 && s.Game.Pending == 0 && s.Game.Predicted != nil && p != nil && math.Abs(s.Game.Predicted.X-p["x"]) < 0.01
	})
	var p map[string]float64
	eventually(t, "the bot sees the page's player where the page does", func() bool {
		p = row(bot, "p", id)
		return p != nil && math.Abs(p["x"]-s.Game.Predicted.X) < 0.01 && math.Abs(p["y"]-s.Game.Predicted.Y) < 0.01
	})
	t.Logf("moved %+.0f in x", sign)

	// The mouse aims: straight down from the player, or up near the bottom.
	tx, ty := p["x"], p["y"]+200
	if ty > w.H-20 {
		ty = p["y"] - 200
	}
	want := math.Atan2(ty-p["y"], tx-p["x"])
	tb.mouse(input.DispatchMouseEventTypeMouseMoved, tx, ty)
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if r := row(bot, "p", id); r != nil && math.Abs(r["aim"]-want) < 0.02 {
			break
		}
		if time.Now().After(deadline) {
			g := tb.state().Game
			t.Fatalf("the page's aim at (%.1f, %.1f), %.3f rad, not seen by the bot within %v: bot sees %v; page's input %v, aimAt %v, predicted %+v",
				tx, ty, want, wait, row(bot, "p", id), g.LastInput, eval[any](tb, "window.tickwire.aimAt ?? null"), g.Predicted)
		}
	}
	in := tb.state().Game.LastInput
	if math.Abs(math.Hypot(in["ax"], in["ay"])-1) > 1e-9 || math.Abs(math.Atan2(in["ay"], in["ax"])-want) > 0.02 || in["fire"] != 0 {
		t.Errorf("page's input %v; want a unit aim at %.3f rad, no fire", in, want)
	}

	// A held mouse button fires: bullets of the page's player, flying the
	// way it aims. Bullets fired before, by the click that focused the
	// canvas, may still fly, toward where it clicked: left out.
	stale := -1.0
	for _, r := range rows(bot, "b") {
		if r["owner"] == float64(id) {
			stale = max(stale, r["id"])
		}
	}
	bulletsOf := func() (ids []float64) {
		for _, r := range rows(bot, "b") {
			if r["owner"] == float64(id) && r["id"] > stale {
				if math.Abs(math.Atan2(r["vy"], r["vx"])-want) > 0.02 {
					t.Errorf("bullet %v flies off the aim %.3f", r, want)
				}
				ids = append(ids, r["id"])
			}
		}
		return ids
	}
	tb.mouse(input.DispatchMouseEventTypeMousePressed, tx, ty, chromedp.ButtonLeft)
	var fired []float64
	eventually(t, "the page's bullets seen by the bot", func() bool {
		fired = bulletsOf()
		return len(fired) >= 2
	})
	tb.mouse(input.DispatchMouseEventTypeMouseReleased, tx, ty, chromedp.ButtonLeft)
	tb.waitState("the page's bullets drawn", func(s pageState) bool {
		return slices.ContainsFunc(s.Game.Tables["b"], func(r pageRow) bool { return r["owner"] == float64(id) })
	})
	tb.waitState("fire released", func(s pageState) bool { return s.Game.LastInput["fire"] == 0 })
	eventually(t, "the bullets gone", func() bool { return len(bulletsOf()) == 0 })

	// So does Space.
	tb.holdKey(' ', 300*time.Millisecond)
	eventually(t, "bullets fired with Space", func() bool {
		ids := bulletsOf()
		return len(ids) > 0 && ids[0] > slices.Max(fired)
	})
	if board := tb.text("#scores"); !strings.Contains(board, "ana") || !strings.Contains(board, "bot") {
		t.Errorf("scoreboard %q", board)
	}
	tb.waitHUD("the mode", func(hud string) bool { return strings.Contains(hud, "shooter") })
}

// TestWatchShooter: the spectator view of a shooter room shows its tables,
// players with hp and the bullets of a bot that fires, with the shooter's
// renderer.
func TestWatchShooter(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.joinMode(t, "bot", "auto", "shooter")
	room := bot.Welcome().Room
	stop := steerBy(bot, func(d time.Duration) []float64 {
		a := 2 * d.Seconds()
		return []float64{math.Cos(a), math.Sin(a), math.Cos(-a), math.Sin(-a), 1}
	})
	defer stop()
	tb := newTab(t)
	tb.navigate(e.url + "/?watch=" + room)
	botKey := strconv.Itoa(int(bot.ID()))
	s := tb.waitState("watching", func(s pageState) bool {
		return s.Spectator != nil && s.Spectator.Connection.State == "connected" && s.Spectator.Players[botKey].Name == "bot" &&
			len(s.Spectator.Tables["b"]) > 0 && s.Renderer != ""
	})
	if s.Spectator.Mode != "shooter" || s.Renderer != "shooter" {
		t.Errorf("spectator mode %q, renderer %q", s.Spectator.Mode, s.Renderer)
	}
	if cols := s.Spectator.Schema.Tables["b"]; !slices.Equal(cols, []string{"id", "x", "y", "vx", "vy", "owner"}) {
		t.Errorf("spectator's schema of b: %v", cols)
	}
	if p := findRow(s.Spectator.Tables["p"], bot.ID()); p == nil || p["hp"] != 100 {
		t.Errorf("bot's row in the spectator view: %v", p)
	}
	for _, b := range s.Spectator.Tables["b"] {
		if b["owner"] != float64(bot.ID()) {
			t.Errorf("bullet %v not the bot's", b)
		}
	}
	tick := s.Spectator.Tick
	tb.waitState("ticks advance", func(s pageState) bool { return s.Spectator.Tick > tick })
	tb.waitHUD("the mode", func(hud string) bool { return strings.Contains(hud, "shooter") })
}

// TestPlayAndWatchArena checks the arena with the mode-aware page: the
// page's mode, tables and renderer while playing and watching.
func TestPlayAndWatchArena(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	tb := newTab(t)
	tb.navigate(e.url + "/?room=auto&mode=arena&name=ana")
	s := tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0 && s.Renderer != ""
	})
	if s.Game.Room != room || s.Game.Mode != "arena" || s.Renderer != "arena" || len(s.Game.Tables["o"]) == 0 {
		t.Fatalf("page in room %q, mode %q, renderer %q, %d orbs", s.Game.Room, s.Game.Mode, s.Renderer, len(s.Game.Tables["o"]))
	}
	o := s.Game.Tables["o"][0]
	tb.waitDrawnAt("an orb drawn", o["x"], o["y"])
	me := findRow(s.Game.Tables["p"], s.Game.ID)
	steerPage(t, tb, bot, s.Game.ID, me["x"], bot.Welcome().W)

	tb.navigate(e.url + "/?watch=" + room)
	s = tb.waitState("watching", func(s pageState) bool {
		return s.Spectator != nil && s.Spectator.Tick > 0 && s.Renderer != ""
	})
	if s.Spectator.Mode != "arena" || s.Renderer != "arena" || len(s.Spectator.Tables["o"]) == 0 || findRow(s.Spectator.Tables["p"], bot.ID()) == nil {
		t.Errorf("spectator mode %q, renderer %q, tables %v", s.Spectator.Mode, s.Renderer, s.Spectator.Tables)
	}
}

// tagSpec is a mode the browser client does not know: runners (players,
// keyed, in a table not named p) move as in arena, and a slot table with
// no position counts the ticks.
func tagSpec() game.Spec {
	return game.Spec{
		Name:  "tag",
		Title: "Tag (a test mode)",
		Tables: []game.Table{
			{Name: "clock", Slots: true, Columns: []game.Column{{Name: "id"}, {Name: "ticks", Step: 1}}},
			{Name: "runners", Columns: []game.Column{{Name: "id"}, {Name: "x"}, {Name: "y"}, {Name: "it", Step: 1}}},
		},
		Input: []string{"dx", "dy"},
		Field: game.Field{W: 800, H: 600, Speed: 200, R: 12},
		New:   func(uint64) game.Mode { return &tagMode{pos: map[uint32]*tagRunner{}} },
	}
}

type tagRunner struct{ x, y, dx, dy float64 }

type tagMode struct {
	ids   []uint32
	pos   map[uint32]*tagRunner
	ticks int
}

func (m *tagMode) Join(id uint32) {
	m.ids = append(m.ids, id)
	slices.Sort(m.ids)
	m.pos[id] = &tagRunner{x: 100 + float64(len(m.ids))*150, y: 300}
}

func (m *tagMode) Leave(id uint32) {
	m.ids = slices.DeleteFunc(m.ids, func(x uint32) bool { return x == id })
	delete(m.pos, id)
}

func (m *tagMode) Input(id uint32, in []float64) {
	if r := m.pos[id]; r != nil {
		r.dx, r.dy = in[0], in[1]
	}
}

// Step moves as arena does: the input clamped to length 1, the position
// to the field.
func (m *tagMode) Step(dt float64) {
	m.ticks++
	for _, r := range m.pos {
		dx, dy := r.dx, r.dy
		if l := math.Hypot(dx, dy); l > 1 {
			dx, dy = dx/l, dy/l
		}
		r.x = max(12, min(800-12, r.x+dx*200*dt))
		r.y = max(12, min(600-12, r.y+dy*200*dt))
	}
}

func (m *tagMode) Write(f *game.Frame) {
	f.Add(0, 1, float64(m.ticks))
	for i, id := range m.ids {
		it := 0.0
		if i == 0 {
			it = 1
		}
		r := m.pos[id]
		f.Add(1, float64(id), r.x, r.y, it)
	}
}

// TestGenericMode: a mode the page has no renderer for is played and
// watched from its schema alone: the generic renderer draws the runners,
// the keys move the page's runner (predicted, since the inputs are dx, dy
// and the rows have x and y), and the tables come through full and delta
// snapshots alike.
func TestGenericMode(t *testing.T) {
	e := startEnv(t, server.Config{Modes: append(server.BuiltinModes(), tagSpec())})
	bot := e.joinMode(t, "bot", "auto", "tag")
	room := bot.Welcome().Room
	tb := newTab(t)

	tb.navigate(e.url + "/?room=auto&mode=tag&name=ana")
	s := tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0 && s.Renderer != "" && s.Game.Predicted != nil
	})
	if s.Game.Room != room || s.Game.Mode != "tag" || s.Renderer != "generic" || s.Game.PlayerTable != "runners" {
		t.Fatalf("page in room %q, mode %q, renderer %q, player table %q", s.Game.Room, s.Game.Mode, s.Renderer, s.Game.PlayerTable)
	}
	if s.Game.World.W != 800 || s.Game.World.H != 600 || eval[int](tb, `document.querySelector("#canvas").width`) != 800 {
		t.Errorf("field %+v", s.Game.World)
	}
	if p := s.Game.Players[strconv.Itoa(int(bot.ID()))]; p.Name != "bot" {
		t.Errorf("players from the runners table: %+v", s.Game.Players)
	}
	if c := s.Game.Tables["clock"]; len(c) != 1 || c[0]["ticks"] < 1 {
		t.Errorf("clock table %v", c)
	}
	id := s.Game.ID
	me := findRow(s.Game.Tables["runners"], id)
	tb.waitDrawnAt("the page's runner drawn", me["x"], me["y"])
	if board := tb.text("#scores"); !strings.Contains(board, "ana") || !strings.Contains(board, "–") {
		t.Errorf("scoreboard without scores: %q", board)
	}

	// Keys move the runner, as the bot sees it.
	tb.do(chromedp.Click(chromedp.CSS("#canvas")))
	tb.holdKey('s', 500*time.Millisecond)
	eventually(t, "the page's runner moved down", func() bool {
		r := row(bot, "runners", id)
		return r != nil && r["y"]-me["y"] > 50
	})
	s = tb.waitState("stopped and reconciled", func(s pageState) bool {
		p := findRow(s.Game.Tables["runners"], id)
		return s.Game.LastInput["dy"] == 0 && s.Game.Pending == 0 && p != nil && math.Abs(s.Game.Predicted.Y-p["y"]) < 0.01
	})
	eventually(t, "the bot sees the runner where the page predicted it", func() bool {
		r := row(bot, "runners", id)
		return r != nil && math.Abs(r["y"]-s.Game.Predicted.Y) < 0.01 && math.Abs(r["x"]-me["x"]) < 0.01
	})

	// The spectator view, over long-poll for a change.
	tb.navigate(e.url + "/?watch=" + room + "&transport=poll")
	s = tb.waitState("watching", func(s pageState) bool {
		return s.Spectator != nil && s.Spectator.Tick > 0 && s.Renderer != "" && findRow(s.Spectator.Tables["runners"], bot.ID()) != nil
	})
	if s.Spectator.Mode != "tag" || s.Renderer != "generic" || len(s.Spectator.Tables["clock"]) != 1 {
		t.Errorf("spectator mode %q, renderer %q, tables %v", s.Spectator.Mode, s.Renderer, s.Spectator.Tables)
	}
	// The bot's id is also the clock row's: the players are still the
	// runners, where every player is.
	if p := s.Spectator.Players[strconv.Itoa(int(bot.ID()))]; p.Name != "bot" || p.X == 0 {
		t.Errorf("spectator's players %+v", s.Spectator.Players)
	}
	r := findRow(s.Spectator.Tables["runners"], bot.ID())
	tb.waitDrawnAt("the bot's runner drawn", r["x"], r["y"])
}

// TestJoinUnknownMode: a link to a mode the server does not run ends in a
// closed connection with the reason.
func TestJoinUnknownMode(t *testing.T) {
	e := startEnv(t, server.Config{})
	tb := newTab(t)
	tb.navigate(e.url + "/?room=auto&mode=nosuchmode&name=ana")
	s := tb.waitState("refused", func(s pageState) bool { return s.Game != nil && s.Game.Connection.State == "closed" })
	if !strings.Contains(tb.text("#conn"), "closed") {
		t.Errorf("badge %q, state %+v", tb.text("#conn"), s.Game.Connection)
	}
}
