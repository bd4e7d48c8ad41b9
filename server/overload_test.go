package server

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

// sloth is a mode whose steps take 1.6 periods at 20 Hz while heavy is set:
// its room's ticks then start late, as on a server past its capacity.
type sloth struct{ heavy *atomic.Bool }

func (s sloth) Join(uint32)             {}
func (s sloth) Leave(uint32)            {}
func (s sloth) Input(uint32, []float64) {}
func (s sloth) Write(f *game.Frame)     { f.Add(0, 1, 0) }
func (s sloth) Step(float64) {
	if s.heavy.Load() {
		time.Sleep(80 * time.Millisecond)
	}
}

func slothSpec(heavy *atomic.Bool) game.Spec {
	return game.Spec{
		Name:   "sloth",
		Tables: []game.Table{{Name: "p", Columns: []game.Column{{Name: "x"}}}},
		Field:  game.Field{W: 100, H: 100},
		New:    func(uint64) game.Mode { return sloth{heavy} },
	}
}

// TestOverloadRefusesNewcomersAndRecovers: while ticks run late, a new
// join gets `overloaded` with a retry hint and close 1013, room creation
// and new spectators get 503 `overloaded` with Retry-After, the metrics
// say so; the players in play keep their snapshots, a viewer in play goes
// on, a player may resume its seat; once ticks are on time again (and the
// hold has passed), newcomers are taken again.
func TestOverloadRefusesNewcomersAndRecovers(t *testing.T) {
	var heavy atomic.Bool
	ts := start(t, Config{Hz: 20, OverloadHold: 300 * time.Millisecond, Modes: []game.Spec{arena.Spec(), slothSpec(&heavy)}})
	inPlay := ts.join(t, "ana", "auto")
	slow := ts.joinMode(t, "ben", "sloth")
	room := inPlay.Welcome().Room
	viewer := ts.watch(t, spectator.Options{Room: room, Transport: spectator.Poll, PollTimeout: 2 * time.Second})
	nextEvent(t, viewer, wire.EventRoom)

	heavy.Store(true)
	deadline := time.Now().Add(20 * time.Second)
	for !ts.load.Overloaded() {
		if time.Now().After(deadline) {
			t.Fatal("late ticks never made the server overloaded")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A newcomer is refused with a hint and close 1013.
	_, err := ts.dial("cleo", "auto", "")
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeOverloaded || je.CloseCode != wire.CloseTryAgainLater {
		t.Fatalf("join while overloaded: %v", err)
	}
	// Rooms and new viewers: 503 with Retry-After.
	resp, err := http.Post(ts.http.URL+"/api/rooms", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"overloaded"`) {
		t.Fatalf("POST /api/rooms while overloaded: %d %s %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	for _, path := range []string{"/events", "/poll", "/events?delay=2", "/poll?delay=2"} {
		resp, err := http.Get(ts.http.URL + "/rooms/" + room + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("a new viewer on %s while overloaded: %d", path, resp.StatusCode)
		}
	}
	// Those in play go on: snapshots, the viewer's polls, a resume.
	before := next[*wire.Snap](t, inPlay).N
	if after := next[*wire.Snap](t, inPlay).N; after <= before {
		t.Fatalf("the player in play stopped getting snapshots: %d then %d", before, after)
	}
	_ = inPlay.Chat("still here")
	for e := range viewer.Events() {
		if e.Type == wire.EventChat {
			break
		}
	}
	token := inPlay.Welcome().Resume
	inPlay.Close()
	back, err := ts.dial("ana", room, token)
	if err != nil {
		t.Fatalf("resume while overloaded: %v", err)
	}
	t.Cleanup(func() { back.Close() })
	if back.ID() != inPlay.ID() {
		t.Fatalf("resumed as %d, was %d", back.ID(), inPlay.ID())
	}
	if !strings.Contains(scrape(t, ts), "tickwire_overloaded 1") {
		t.Fatal("metrics do not say the server is overloaded")
	}

	// Ticks on time again: newcomers are taken after the hold.
	heavy.Store(false)
	deadline = time.Now().Add(20 * time.Second)
	for ts.load.Overloaded() {
		if time.Now().After(deadline) {
			t.Fatal("the server stayed overloaded with every tick on time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.join(t, "dan", "auto")
	if !strings.Contains(scrape(t, ts), "tickwire_overloaded 0") {
		t.Fatal("metrics still say overloaded")
	}
	if slow.Err() != nil {
		t.Fatalf("the sloth's player was dropped: %v", slow.Err())
	}
}

func scrape(t *testing.T, ts *testServer) string {
	t.Helper()
	resp, err := http.Get(ts.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
