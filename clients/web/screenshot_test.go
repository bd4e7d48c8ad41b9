package web_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/tickwire/tickwire/clients/peer"
	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/shooter"
	"github.com/tickwire/tickwire/server"
)

// TestScreenshots writes the README's screenshots to docs/ when
// TICKWIRE_SCREENSHOTS=1: the lobby, a game with bots, a voice call and
// the spectator view (the shooter and the replay page have tests of their
// own below).
func TestScreenshots(t *testing.T) {
	if os.Getenv("TICKWIRE_SCREENSHOTS") != "1" {
		t.Skip("set TICKWIRE_SCREENSHOTS=1 to write docs/screenshot-*.png")
	}
	e := startEnv(t, server.Config{})
	kai := e.join(t, "kai", "auto")
	room := kai.Welcome().Room
	bots := []string{"mio", "zed", "lu"}
	stops := []func(){circle(kai, 0)}
	for i, name := range bots {
		b := e.join(t, name, room)
		stops = append(stops, circle(b, float64(i+1)*1.6))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	// Two more public rooms for the lobby.
	for _, n := range []string{"pat", "sam"} {
		e.join(t, n, createRoomID(t, e))
	}

	tb := newTab(t)
	tb.do(chromedp.EmulateViewport(1400, 900))
	shot := func(name string) { tb.screenshot(name) }

	tb.navigate(e.url + "/")
	tb.waitState("rooms", func(s pageState) bool { return len(s.Rooms) >= 3 })
	tb.do(chromedp.SendKeys(chromedp.CSS("#name-input"), "ana"))
	shot("lobby")

	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	tb.waitState("joined", func(s pageState) bool { return s.Game != nil && s.Game.Connection.State == "connected" })
	_ = kai.Chat("gl hf!")
	time.Sleep(300 * time.Millisecond)
	tb.do(
		chromedp.SendKeys(chromedp.CSS("#chat-input"), "hi all, ana here"),
		chromedp.SendKeys(chromedp.CSS("#chat-input"), kb.Enter),
	)
	time.Sleep(300 * time.Millisecond)
	_ = kai.Chat("the orbs respawn fast in here")
	tb.do(chromedp.Click(chromedp.CSS("#canvas")))
	tb.holdKey('d', 800*time.Millisecond)
	tb.holdKey('s', 500*time.Millisecond)
	tb.waitState("rtt known", func(s pageState) bool {
		for _, p := range s.Game.Players {
			if p.RTT == 0 {
				return false
			}
		}
		return true
	})
	_ = kai.Typing()
	time.Sleep(200 * time.Millisecond)
	shot("game")

	var peers []*peer.Peer
	for _, name := range []string{"mio", "zed"} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		p, err := peer.Join(ctx, peer.Config{Server: e.bots.URL, Call: room, Name: name})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
		defer p.Close()
	}
	tb.do(chromedp.Click(chromedp.CSS("#call-btn")))
	tb.waitState("call up", func(s pageState) bool {
		if s.Call == nil || len(s.Call.Peers) != len(peers) {
			return false
		}
		for _, p := range s.Call.Peers {
			if p.State != "connected" || p.Channel != "open" {
				return false
			}
		}
		return true
	})
	tb.do(
		chromedp.SendKeys(chromedp.CSS("#dc-input"), "can you hear me?"),
		chromedp.SendKeys(chromedp.CSS("#dc-input"), kb.Enter),
	)
	time.Sleep(300 * time.Millisecond)
	tb.do(chromedp.ScrollIntoView(chromedp.CSS("#voice")))
	shot("call")

	tb.navigate(e.url + "/?watch=" + room)
	tb.waitState("watching", func(s pageState) bool { return s.Spectator != nil && s.Spectator.Tick > 0 })
	_ = kai.Chat("someone is watching us")
	time.Sleep(time.Second)
	shot("watch")
}

// screenshot writes the tab's viewport to docs/screenshot-NAME.png.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, wait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "screenshot-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("wrote %s (%d bytes)", path, len(png))
}

// TestScreenshotShooter writes docs/screenshot-shooter.png when
// TICKWIRE_SCREENSHOTS=1: the page in a shooter room with bots that chase
// and fire at each other, aiming with the mouse and firing.
func TestScreenshotShooter(t *testing.T) {
	if os.Getenv("TICKWIRE_SCREENSHOTS") != "1" {
		t.Skip("set TICKWIRE_SCREENSHOTS=1 to write docs/screenshot-*.png")
	}
	e := startEnv(t, server.Config{})
	kai := e.joinMode(t, "kai", "auto", "shooter")
	room := kai.Welcome().Room
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for i, name := range []string{"kai", "mio", "zed", "lu"} {
		b := kai
		if i > 0 {
			b = e.join(t, name, room)
		}
		stops = append(stops, playShooterBot(b, uint64(i+1)))
	}

	tb := newTab(t)
	tb.do(chromedp.EmulateViewport(1400, 900))
	tb.navigate(e.url + "/?room=auto&mode=shooter&name=ana")
	s := tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Mode == "shooter" && s.Game.Tick > 0
	})
	_ = kai.Chat("shooter time")
	tb.do(chromedp.Click(chromedp.CSS("#canvas")))
	tb.holdKey('w', 400*time.Millisecond)
	// Aim at the nearest bot and fire a burst.
	me := row(kai, "p", s.Game.ID)
	tx, ty := me["x"]+150, me["y"]
	for _, r := range rows(kai, "p") {
		if r["id"] != float64(s.Game.ID) && math.Hypot(r["x"]-me["x"], r["y"]-me["y"]) < math.Hypot(tx-me["x"], ty-me["y"])+300 {
			tx, ty = r["x"], r["y"]
			break
		}
	}
	tb.mouse(input.DispatchMouseEventTypeMouseMoved, tx, ty)
	tb.mouse(input.DispatchMouseEventTypeMousePressed, tx, ty, chromedp.ButtonLeft)
	time.Sleep(450 * time.Millisecond)
	tb.mouse(input.DispatchMouseEventTypeMouseReleased, tx, ty, chromedp.ButtonLeft)
	tb.waitState("rtt known", func(s pageState) bool {
		for _, p := range s.Game.Players {
			if p.RTT == 0 {
				return false
			}
		}
		return true
	})
	tb.waitState("bullets in flight", func(s pageState) bool { return len(s.Game.Tables["b"]) >= 2 })
	tb.screenshot("shooter")
}

// TestScreenshotReplay writes docs/screenshot-replay.png when
// TICKWIRE_SCREENSHOTS=1: the replay page playing a recorded match at 2x,
// past its chat lines, with its controls.
func TestScreenshotReplay(t *testing.T) {
	if os.Getenv("TICKWIRE_SCREENSHOTS") != "1" {
		t.Skip("set TICKWIRE_SCREENSHOTS=1 to write docs/screenshot-*.png")
	}
	e := startEnv(t, server.Config{DataDir: t.TempDir(), RoomIdle: 300 * time.Millisecond})
	m := recordMatch(t, e, 8*time.Second)
	tb := newTab(t)
	tb.do(chromedp.EmulateViewport(1400, 900))
	tb.navigate(e.url + "/?replay=" + m.room + "&speed=2")
	tb.waitReplay("past the chat and the middle", func(s replayPage) bool {
		return len(chatTexts(s.Replay.Chat)) == len(m.chat) && s.Replay.Range != nil &&
			s.Replay.Tick > s.Replay.Range.First+m.summary.Ticks/2
	})
	tb.screenshot("replay")
}

// playShooterBot plays c with the shooter's own bot (it chases and fires
// at the nearest player) until the returned func is called.
func playShooterBot(c *player.Client, seed uint64) (stop func()) {
	w := c.Welcome()
	bot := shooter.NewBot(seed)
	field := game.Field{W: w.W, H: w.H, Speed: w.Speed, R: w.R}
	return steerBy(c, func(time.Duration) []float64 {
		return slices.Clone(bot.Input(c.Latest(), c.ID(), field))
	})
}

// createRoomID creates a public room and returns its id.
func createRoomID(t *testing.T, e *env) string {
	t.Helper()
	var room struct {
		ID string `json:"id"`
	}
	postJSON(t, e.url+"/api/rooms", `{}`, &room)
	return room.ID
}
