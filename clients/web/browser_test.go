package web_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/tickwire/tickwire/clients/peer"
	"github.com/tickwire/tickwire/clients/web"
	"github.com/tickwire/tickwire/server"
	"github.com/tickwire/tickwire/wire"
)

func TestHandlerServesTheClient(t *testing.T) {
	hs := httptest.NewServer(web.Handler())
	defer hs.Close()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<canvas id="canvas"`},
		{"/?room=auto&name=ana", "text/html; charset=utf-8", `type="module" src="app.js"`},
		{"/app.js", "text/javascript; charset=utf-8", `from "./tickwire.js"`},
		{"/tickwire.js", "text/javascript; charset=utf-8", "export function join("},
		{"/style.css", "text/css; charset=utf-8", "canvas"},
		{"/vendor/msgpack.min.js", "text/javascript; charset=utf-8", "MessagePack"},
	} {
		res, err := http.Get(hs.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != tc.ctype || !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: %s, %q, %d bytes; want 200, %q, containing %q", tc.path, res.Status, res.Header.Get("Content-Type"), len(body), tc.ctype, tc.contains)
		}
		// A second request revalidates with the ETag.
		req, _ := http.NewRequest(http.MethodGet, hs.URL+tc.path, nil)
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		res2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res2.Body.Close()
		if res2.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %s, want 304", tc.path, res2.Status)
		}
	}
	for _, path := range []string{"/index.html", "/nope", "/vendor/", "/vendor", "/api/rooms", "/app.js/x"} {
		res, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, res.Status)
		}
	}
	res, err := http.Post(hs.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405", res.Status)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestLobbyListsCreatesAndJoinsRooms(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	tb := newTab(t)

	tb.navigate(e.url + "/")
	tb.waitState("room list shows the bot's room", func(s pageState) bool {
		return s.View == "lobby" && slices.ContainsFunc(s.Rooms, func(r roomInfo) bool { return r.ID == room && r.Players == 1 })
	})
	tb.do(chromedp.WaitVisible(chromedp.CSS(`#rooms tr[data-room="` + room + `"]`)))
	// The list refreshes by itself.
	other := createRoomID(t, e)
	e.join(t, "cleo", other)
	tb.do(chromedp.WaitVisible(chromedp.CSS(`#rooms tr[data-room="` + other + `"]`)))
	if got := tb.text("#conn"); got != "idle" {
		t.Errorf("lobby connection badge %q, want idle", got)
	}

	// Create a room with a name: the page moves to the new room's link.
	tb.do(
		chromedp.SendKeys(chromedp.CSS("#name-input"), "ana"),
		chromedp.Click(chromedp.CSS("#create-room")),
	)
	s := tb.waitState("joined the created room", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected"
	})
	if s.Game.Room == room || s.Game.Room == "auto" || s.Game.Room == "" {
		t.Fatalf("created room %q (bot's room %q)", s.Game.Room, room)
	}
	loc := eval[string](tb, "location.search")
	if loc != "?room="+s.Game.Room+"&name=ana" {
		t.Errorf("link of the created room %q", loc)
	}
	var list struct {
		Rooms []roomInfo `json:"rooms"`
	}
	getJSON(t, e.url+"/api/rooms", &list)
	if !slices.ContainsFunc(list.Rooms, func(r roomInfo) bool { return r.ID == s.Game.Room }) {
		t.Errorf("server does not list the created room %s: %+v", s.Game.Room, list.Rooms)
	}

	// Quick play joins a room chosen by the server.
	tb.navigate(e.url + "/")
	tb.waitState("lobby", func(s pageState) bool { return s.View == "lobby" })
	if v := eval[string](tb, `document.querySelector("#name-input").value`); v != "ana" {
		t.Errorf("name not remembered: %q", v)
	}
	tb.do(chromedp.Click(chromedp.CSS("#quick-play")))
	s = tb.waitState("quick play", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected"
	})
	if s.Game.Room == "auto" || s.Game.Room == "" || !strings.Contains(eval[string](tb, "location.search"), "room="+s.Game.Room) {
		t.Errorf("quick play: room %q, link %s", s.Game.Room, eval[string](tb, "location.search"))
	}
}

// TestPlayByLink: the page joins from a shared link, sees a Go bot move,
// and its keyboard input moves its player on the server.
func TestPlayByLink(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	w := bot.Welcome()
	tb := newTab(t)

	start := time.Now()
	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	s := tb.waitState("joined", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0
	})
	t.Logf("page loaded and joined in %v (browser launch %v)", time.Since(start).Round(time.Millisecond), browser.launch.Round(time.Millisecond))
	if s.Game.Room != room || s.Game.Players[strconv.Itoa(int(bot.ID()))].Name != "bot" {
		t.Fatalf("page in room %q with players %+v; want room %s with the bot", s.Game.Room, s.Game.Players, room)
	}
	if got := tb.text("#conn"); got != "connected" {
		t.Errorf("connection badge %q", got)
	}
	ana := strconv.Itoa(int(s.Game.ID))
	botKey := strconv.Itoa(int(bot.ID()))

	// The bot moves; the page sees it.
	before := s.Game.Players[botKey]
	dir := 1.0
	if before.X > w.W/2 {
		dir = -1
	}
	stop := steer(bot, dir, 0)
	tb.waitState("the bot's movement in the page", func(s pageState) bool {
		return math.Abs(s.Game.Players[botKey].X-before.X) > 60
	})
	stop()
	rendered := eval[int](tb, `window.tickwire.game.view().players.size`)
	if rendered != 2 {
		t.Errorf("view() renders %d players, want 2", rendered)
	}

	// The page's keyboard moves its player; the bot sees it.
	first := s.Game.Players[ana]
	sign := steerPage(t, tb, bot, s.Game.ID, first.X, w.W)
	// An input moves the page's own player at once, before the server has
	// seen it: one step of speed/hz.
	step := eval[float64](tb, `(() => {
		const g = window.tickwire.game, x = g.predicted.x;
		g.input(`+strconv.FormatFloat(-sign, 'f', -1, 64)+`, 0);
		const moved = g.predicted.x - x;
		g.input(0, 0);
		return moved;
	})()`)
	if want := -sign * w.Speed / float64(w.Hz); math.Abs(step-want) > 1e-9 {
		t.Errorf("one input moved the prediction by %v, want %v", step, want)
	}
	// Once every input is acknowledged, prediction and server agree, and
	// both agree with what the bot sees.
	s = tb.waitState("reconciled", func(s pageState) bool {
		p := s.Game.Players[ana]
		return s.Game.Pending == 0 && s.Game.Predicted != nil &&
			math.Abs(s.Game.Predicted.X-p.X) < 0.01 && math.Abs(s.Game.Predicted.Y-p.Y) < 0.01 && s.Game.Ack > 0
	})
	time.Sleep(100 * time.Millisecond)
	if p := row(bot, "p", s.Game.ID); p == nil || math.Abs(p["x"]-s.Game.Predicted.X) > 0.01 || math.Abs(p["y"]-first.Y) > 0.01 {
		t.Errorf("bot sees ana at %v; page predicted (%.2f, %.2f), start y %.2f", p, s.Game.Predicted.X, s.Game.Predicted.Y, first.Y)
	}

	// Own ping and clock offset from ping/pong, and the server's rtt of
	// everyone on the scoreboard (the server measures it every 2 s).
	s = tb.waitState("ping and rtt", func(s pageState) bool {
		return s.Game.Ping != nil && *s.Game.Ping > 0 && s.Game.Jitter != nil && s.Game.ClockOffset != nil &&
			s.Game.Players[ana].RTT > 0 && s.Game.Players[botKey].RTT > 0
	})
	if math.Abs(*s.Game.ClockOffset) > 1000 {
		t.Errorf("clock offset %v ms on one machine", *s.Game.ClockOffset)
	}
	if board := tb.text("#scores"); !strings.Contains(board, "ana") || !strings.Contains(board, "bot") || !strings.Contains(board, " ms") {
		t.Errorf("scoreboard %q lacks players or rtt", board)
	}
	tb.waitHUD("the ping", func(hud string) bool { return strings.Contains(hud, "ping ") && !strings.Contains(hud, "ping –") })
}

func TestChatAndTyping(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	tb := newTab(t)
	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	s := tb.waitState("joined", func(s pageState) bool { return s.Game != nil && s.Game.Connection.State == "connected" })
	anaID := s.Game.ID

	// Typing in the page reaches the bot as "typing", Enter sends the line.
	tb.do(chromedp.SendKeys(chromedp.CSS("#chat-input"), "hello from ana"))
	awaitMsg(t, bot, "typing from ana", func(m *wire.TypingFrom) bool { return m.ID == anaID })
	tb.do(chromedp.SendKeys(chromedp.CSS("#chat-input"), kb.Enter))
	line := awaitMsg(t, bot, "chat from ana", func(m *wire.ChatLine) bool { return m.ID == anaID })
	if line.Name != "ana" || line.Text != "hello from ana" {
		t.Errorf("bot got %+v", line)
	}
	if v := eval[string](tb, `document.querySelector("#chat-input").value`); v != "" {
		t.Errorf("chat input not cleared: %q", v)
	}

	// The bot types and chats; the page shows both.
	if err := bot.Typing(); err != nil {
		t.Fatal(err)
	}
	tb.waitState("typing indicator", func(s pageState) bool { return slices.Contains(s.Game.Typing, "bot") })
	tb.do(chromedp.WaitVisible(chromedp.CSS("#typing")))
	eventually(t, "typing shown", func() bool { return tb.text("#typing") == "bot is typing…" })
	if err := bot.Chat("hi ana"); err != nil {
		t.Fatal(err)
	}
	s = tb.waitState("chat from the bot", func(s pageState) bool { return hasEntry(s.Game.Chat, "chat", "hi ana") })
	if got, want := chatTexts(s.Game.Chat), []string{"ana: hello from ana", "bot: hi ana"}; !slices.Equal(got, want) {
		t.Errorf("page chat %q, want %q", got, want)
	}
	if len(s.Game.Typing) != 0 {
		t.Errorf("still typing after the line: %v", s.Game.Typing)
	}
	if log := tb.text("#chat-log"); !strings.Contains(log, "bot hi ana") || !strings.Contains(log, "ana hello from ana") {
		t.Errorf("chat log shows %q", log)
	}

	// Join and leave notices.
	cleo := e.join(t, "cleo", room)
	tb.waitState("join notice", func(s pageState) bool { return hasEntry(s.Game.Chat, "joined", "cleo joined") })
	if err := cleo.Leave(); err != nil {
		t.Fatal(err)
	}
	tb.waitState("leave notice", func(s pageState) bool { return hasEntry(s.Game.Chat, "left", "cleo left (leave)") })
	if log := tb.text("#chat-log"); !strings.Contains(log, "cleo joined") || !strings.Contains(log, "cleo left") {
		t.Errorf("chat log shows %q", log)
	}
}

// TestReconnectResumesTheSeat: when the connection drops, the page shows
// it, reconnects with backoff and resumes its seat; the others see no
// leave or join.
func TestReconnectResumesTheSeat(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	tb := newTab(t)
	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	s := tb.waitState("joined", func(s pageState) bool { return s.Game != nil && s.Game.Connection.State == "connected" })
	id := s.Game.ID
	drain(bot)

	dropped := time.Now()
	e.dropBrowserConns()
	var badge string
	eventually(t, "reconnecting shown", func() bool {
		badge = tb.text("#conn")
		return strings.HasPrefix(badge, "reconnecting in ")
	})
	s = tb.waitState("reconnected", func(s pageState) bool { return s.Game.Connection.State == "connected" })
	t.Logf("badge %q; reconnected after %v", badge, time.Since(dropped).Round(time.Millisecond))
	if s.Game.ID != id {
		t.Errorf("id %d after the reconnect, was %d: the seat was not resumed", s.Game.ID, id)
	}
	expectResumed(t, tb, bot)

	// Leaving closes for good.
	eval[bool](tb, `window.tickwire.game.leave(), true`)
	awaitMsg(t, bot, "ana left", func(m *wire.Left) bool { return m.ID == id && m.Reason == wire.LeftLeave })
	tb.waitState("closed", func(s pageState) bool { return s.Game.Connection.State == "closed" })
	if badge := tb.text("#conn"); badge != "closed: left" {
		t.Errorf("badge %q after leaving", badge)
	}
}

// TestSpectator watches a room over SSE and over long-poll, and recovers
// after the server drops its stream, with no chat lost or repeated.
func TestSpectator(t *testing.T) {
	for _, tc := range []struct{ name, query, transport string }{
		{"sse", "", "sse"},
		{"poll", "&transport=poll", "poll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, server.Config{})
			bot := e.join(t, "bot", "auto")
			room := bot.Welcome().Room
			stop := circle(bot, 0)
			defer stop()
			tb := newTab(t)

			tb.navigate(e.url + "/?watch=" + room + tc.query)
			botKey := strconv.Itoa(int(bot.ID()))
			s := tb.waitState("watching", func(s pageState) bool {
				return s.Spectator != nil && s.Spectator.Connection.State == "connected" && s.Spectator.Tick > 0 &&
					s.Spectator.Players[botKey].Name == "bot"
			})
			if s.Spectator.Transport != tc.transport || s.Game != nil || s.View != "watch" {
				t.Fatalf("view %q, transport %q, game %v", s.View, s.Spectator.Transport, s.Game != nil)
			}
			tick := s.Spectator.Tick
			tb.waitState("ticks advance", func(s pageState) bool { return s.Spectator.Tick > tick })
			if hidden := eval[bool](tb, `document.querySelector("#chat-form").hidden && document.querySelector("#voice").hidden`); !hidden {
				t.Error("read-only view shows the chat form or voice")
			}

			if err := bot.Chat("before the drop"); err != nil {
				t.Fatal(err)
			}
			s = tb.waitState("chat", func(s pageState) bool { return hasEntry(s.Spectator.Chat, "chat", "before the drop") })
			last := *s.Spectator.LastEventID

			e.dropBrowserConns()
			if err := bot.Chat("during the drop"); err != nil {
				t.Fatal(err)
			}
			s = tb.waitState("chat after the drop", func(s pageState) bool {
				return hasEntry(s.Spectator.Chat, "chat", "during the drop") && s.Spectator.Connection.State == "connected"
			})
			if err := bot.Chat("after the drop"); err != nil {
				t.Fatal(err)
			}
			tick = s.Spectator.Tick
			s = tb.waitState("live again", func(s pageState) bool {
				return hasEntry(s.Spectator.Chat, "chat", "after the drop") && s.Spectator.Tick > tick
			})
			if got, want := chatTexts(s.Spectator.Chat), []string{"bot: before the drop", "bot: during the drop", "bot: after the drop"}; !slices.Equal(got, want) {
				t.Errorf("chat %q, want %q", got, want)
			}
			// (Chromium retries a GET on a dropped keep-alive connection by
			// itself, so a parked poll may not even see the drop.)
			if s.Spectator.Transport != tc.transport || *s.Spectator.LastEventID <= last {
				t.Errorf("after the drop: transport %q, last id %d (was %d)", s.Spectator.Transport, *s.Spectator.LastEventID, last)
			}
			if s.Spectator.Counts["room"] != 1 {
				t.Errorf("%d room events: the resume started over", s.Spectator.Counts["room"])
			}
			tb.waitHUD("the transport", func(hud string) bool {
				return strings.Contains(hud, map[string]string{"sse": "Server-Sent Events", "poll": "long-poll"}[tc.transport])
			})
		})
	}
}

// TestSpectatorFallsBackToPoll: when SSE reconnects are refused (503, which
// closes an EventSource for good), the view switches to long-poll by itself
// and resumes from the last event id.
func TestSpectatorFallsBackToPoll(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	stop := circle(bot, 0)
	defer stop()
	tb := newTab(t)
	tb.navigate(e.url + "/?watch=" + room)
	tb.waitState("watching over SSE", func(s pageState) bool {
		return s.Spectator != nil && s.Spectator.Transport == "sse" && s.Spectator.Connection.State == "connected" && s.Spectator.Tick > 0
	})
	if err := bot.Chat("one"); err != nil {
		t.Fatal(err)
	}
	tb.waitState("chat over SSE", func(s pageState) bool { return hasEntry(s.Spectator.Chat, "chat", "one") })

	e.sseDown.Store(true)
	e.dropBrowserConns()
	if err := bot.Chat("two"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := tb.waitState("fell back to long-poll", func(s pageState) bool {
		return s.Spectator.Transport == "poll" && hasEntry(s.Spectator.Chat, "chat", "two")
	})
	t.Logf("switched to long-poll %v after the drop", time.Since(start).Round(time.Millisecond))
	if err := bot.Chat("three"); err != nil {
		t.Fatal(err)
	}
	tick := s.Spectator.Tick
	s = tb.waitState("live over long-poll", func(s pageState) bool {
		return hasEntry(s.Spectator.Chat, "chat", "three") && s.Spectator.Tick > tick
	})
	if got, want := chatTexts(s.Spectator.Chat), []string{"bot: one", "bot: two", "bot: three"}; !slices.Equal(got, want) {
		t.Errorf("chat %q, want %q", got, want)
	}

	// An unknown room ends the view with a reason.
	tb.navigate(e.url + "/?watch=no-such-room")
	tb.waitState("unknown room", func(s pageState) bool {
		return s.Spectator != nil && s.Spectator.Connection.State == "closed"
	})
	if badge := tb.text("#conn"); badge != "closed: room not found" {
		t.Errorf("badge %q", badge)
	}
}

// TestVoiceCall: the page joins the room's call with a fake microphone and
// connects to Pion peers: two that were there first and also offer, so the
// offers collide (the page is polite toward a peer whose id sorts higher,
// and the page rejoins until it has been both polite and impolite), and one
// that comes after it, which the page answers. The peers echo DataChannel
// messages, and the page's audio reaches them.
func TestVoiceCall(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	joinPeer := func(name string, offerOnJoined bool) *peer.Peer {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		p, err := peer.Join(ctx, peer.Config{Server: e.bots.URL, Call: room, Name: name, OfferOnJoined: offerOnJoined})
		if err != nil {
			t.Fatalf("peer %s: %v", name, err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	glare := []*peer.Peer{joinPeer("pion-1", true), joinPeer("pion-2", true)}

	tb := newTab(t)
	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	// The button is clicked once the page plays, with both players on
	// the scoreboard: the game's side panel appears with the welcome.
	tb.waitState("both players on the scoreboard", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && len(s.Game.Players) == 2
	})

	open := func(s pageState) int {
		n := 0
		for _, p := range s.Call.Peers {
			if p.State == "connected" && p.Channel == "open" {
				n++
			}
		}
		return n
	}
	echoes := func(s pageState, text string) (from []string) {
		for _, m := range s.Call.Messages {
			if m.Dir == "in" && m.Text == text {
				from = append(from, m.From)
			}
		}
		slices.Sort(from)
		return from
	}
	sendDC := func(text string) {
		t.Helper()
		tb.do(
			chromedp.SendKeys(chromedp.CSS("#dc-input"), text),
			chromedp.SendKeys(chromedp.CSS("#dc-input"), kb.Enter),
		)
	}
	ids := func(peers ...*peer.Peer) []string {
		var out []string
		for _, p := range peers {
			out = append(out, p.ID())
		}
		slices.Sort(out)
		return out
	}

	// Ids are random: the page is polite toward a peer whose id sorts
	// higher. Calls repeat, with fresh Pion peers when a role is missing,
	// until the page has been both (each call has a 2/3 chance of each).
	var me string
	polite := map[bool]bool{}
	for attempt := 1; !polite[true] || !polite[false]; attempt++ {
		if attempt > 12 {
			t.Fatalf("the page was never %v in 12 calls", map[bool]string{true: "impolite", false: "polite"}[polite[true]])
		}
		clicked := time.Now()
		tb.do(chromedp.Click(chromedp.CSS("#call-btn")))
		s := tb.waitState("connected to both glare peers", func(s pageState) bool {
			return s.Call != nil && len(s.Call.Peers) == 2 && open(s) == 2
		})
		me = s.Call.ID
		t.Logf("call %d: call button to 2 open DataChannels %v; page side: %+v", attempt, time.Since(clicked).Round(time.Millisecond), s.Call.Peers)
		if !s.Call.Microphone {
			t.Fatal("no microphone")
		}
		for _, p := range s.Call.Peers {
			if p.Polite != (me < p.ID) {
				t.Errorf("page %q polite=%v toward %q", me, p.Polite, p.ID)
			}
			polite[p.Polite] = true
		}
		text := "hello " + strconv.Itoa(attempt)
		sendDC(text)
		tb.waitState("echoes from both", func(s pageState) bool { return slices.Equal(echoes(s, text), ids(glare...)) })
		if polite[true] && polite[false] {
			break
		}
		tb.do(chromedp.Click(chromedp.CSS("#call-btn")))
		tb.waitState("left the call", func(s pageState) bool { return s.Call == nil })
		for i, p := range glare {
			p.Close()
			glare[i] = joinPeer(fmt.Sprintf("pion-%d", i+1), true)
		}
	}
	for _, p := range glare {
		st := p.Stats()
		t.Logf("%s: %d glares, %d restarts", p.ID(), st.Glares, st.Restarts)
	}
	rtpFrom := func(p *peer.Peer) uint64 {
		for _, r := range p.Stats().Remotes {
			if r.ID == me {
				return r.RTPIn
			}
		}
		return 0
	}
	eventually(t, "audio from the page at the first peers", func() bool { return rtpFrom(glare[0]) > 10 && rtpFrom(glare[1]) > 10 })

	// A newcomer offers to the page, which answers.
	third := joinPeer("pion-3", false)
	tb.waitState("connected to all three", func(s pageState) bool { return open(s) == 3 })
	sendDC("hello all")
	tb.waitState("echoes from all", func(s pageState) bool {
		return slices.Equal(echoes(s, "hello all"), ids(append(glare, third)...))
	})
	eventually(t, "audio from the page at the newcomer", func() bool { return rtpFrom(third) > 10 })
	if peers := tb.text("#call-peers"); !strings.Contains(peers, "pion-1") || !strings.Contains(peers, "pion-3") || !strings.Contains(peers, "connected") {
		t.Errorf("peer list shows %q", peers)
	}

	// Mute keeps the call up; leaving closes it on the peers' side.
	tb.do(chromedp.Click(chromedp.CSS("#mute-btn")))
	tb.waitState("muted", func(s pageState) bool { return s.Call.Muted && open(s) == 3 })
	tb.do(chromedp.Click(chromedp.CSS("#call-btn")))
	eventually(t, "peers see the page leave", func() bool {
		for _, p := range append(glare, third) {
			for _, r := range p.Stats().Remotes {
				if r.ID == me && r.State != "closed" {
					return false
				}
			}
		}
		return true
	})
}

// TestControlsStayPutAsPlayersJoin: the scoreboard and the chat log keep
// their heights as players join, so the voice and chat controls stay where
// the player aims (a click on "Join voice" while the board grew a row went
// to the board); the rows and lines that do not fit scroll, and a player's
// own row stays in view.
func TestControlsStayPutAsPlayersJoin(t *testing.T) {
	e := startEnv(t, server.Config{})
	bot := e.join(t, "bot", "auto")
	room := bot.Welcome().Room
	tb := newTab(t)
	tb.navigate(e.url + "/?room=" + room + "&name=ana")
	rows := func(tb *tab) int { return eval[int](tb, `document.querySelectorAll("#scores tr").length`) }
	eventually(t, "both players on the scoreboard", func() bool { return rows(tb) == 2 })
	type place struct{ Call, Chat, Voice float64 }
	where := func() place {
		return eval[place](tb, `(() => {
			const top = (sel) => document.querySelector(sel).getBoundingClientRect().top + window.scrollY;
			return { call: top("#call-btn"), chat: top("#chat-input"), voice: top("#voice") };
		})()`)
	}
	before := where()

	const players = 12
	for i := 2; i < players; i++ {
		e.join(t, fmt.Sprintf("bot-%d", i), room)
	}
	eventually(t, "every player on the scoreboard", func() bool { return rows(tb) == players })
	if after := where(); after != before {
		t.Errorf("with %d players the controls moved: %+v, with 2 at %+v", players, after, before)
	}
	if !eval[bool](tb, `(() => { const b = document.querySelector(".scores-box"); return b.scrollHeight > b.clientHeight; })()`) {
		t.Errorf("%d rows fit the scoreboard's box: it should scroll", players)
	}

	// The last to join sorts last among equal scores, below the rows that
	// fit; its own row still shows, at the box's bottom edge.
	zoe := newTab(t)
	zoe.navigate(e.url + "/?room=" + room + "&name=zoe")
	eventually(t, "zoe sees every player", func() bool { return rows(zoe) == players+1 })
	own := eval[struct {
		Index   int
		Visible bool
	}](zoe, `(() => {
		const box = document.querySelector(".scores-box").getBoundingClientRect();
		const me = document.querySelector("#scores tr.me"), r = me.cells[0].getBoundingClientRect(); // a sticky row's cells move, not the row
		return { index: me.sectionRowIndex, visible: r.top >= box.top - 1 && r.bottom <= box.bottom + 1 };
	})()`)
	t.Logf("zoe's own row is row %d of %d", own.Index+1, players+1)
	if !own.Visible {
		t.Errorf("zoe's own row (row %d of %d) is out of the scoreboard's view", own.Index+1, players+1)
	}
}
