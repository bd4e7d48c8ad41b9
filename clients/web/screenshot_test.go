package web_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/tickwire/tickwire/clients/peer"
	"github.com/tickwire/tickwire/internal/server"
)

// TestScreenshots writes the README's screenshots to docs/ when
// TICKWIRE_SCREENSHOTS=1: the lobby, a game with bots, a voice call and
// the spectator view.
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
	shot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(tb.ctx, wait)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "..", "docs", "screenshot-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", path, len(png))
	}

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

// createRoomID creates a public room and returns its id.
func createRoomID(t *testing.T, e *env) string {
	t.Helper()
	var room struct {
		ID string `json:"id"`
	}
	postJSON(t, e.url+"/api/rooms", `{}`, &room)
	return room.ID
}
