package web_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/web"
	"github.com/tickwire/tickwire/internal/natstest"
	"github.com/tickwire/tickwire/server"
	"github.com/tickwire/tickwire/wire"
)

// node is one node of a test cluster: a Tickwire server joined to the
// others through an embedded NATS server, serving the browser client on
// 127.0.0.1 with its listener's address as its public URL.
type node struct {
	srv   *server.Server
	hs    *httptest.Server // what the browser uses; its address is the public URL
	url   string           // http://127.0.0.1:port
	bots  *httptest.Server // a second listener for Go clients
	ln    *trackingListener
	plays atomic.Int64 // /ws/play requests on hs
}

// startCluster runs n nodes on one embedded NATS server, each telling the
// others its rooms every 100 ms, and returns once every node accepts the
// pages of every other (it has heard of them).
func startCluster(t *testing.T, n int) []*node {
	t.Helper()
	natsURL := natstest.Start(t)
	nodes := make([]*node, n)
	for i := range nodes {
		c := &node{}
		c.hs = httptest.NewUnstartedServer(nil)
		c.url = "http://" + c.hs.Listener.Addr().String()
		srv, err := server.Open(server.Config{NoOverload: true,
			NATS: natsURL, PublicURL: c.url, DirectoryEvery: 100 * time.Millisecond, Logger: quiet(),
		})
		if err != nil {
			c.hs.Close()
			t.Fatalf("open node %d: %v", i, err)
		}
		c.srv = srv
		api := srv.Handler()
		c.hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ws/play" {
				c.plays.Add(1)
			}
			api.ServeHTTP(w, r)
		})
		c.ln = &trackingListener{Listener: c.hs.Listener, conns: make(map[net.Conn]struct{})}
		c.hs.Listener = c.ln
		c.hs.Start()
		c.bots = httptest.NewServer(api)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.srv.Shutdown(ctx); err != nil {
				t.Errorf("node shutdown: %v", err)
			}
			c.hs.Close()
			c.bots.Close()
		})
		nodes[i] = c
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				eventually(t, b.url+" accepts pages of "+a.url, func() bool { return acceptsOrigin(t, b, a.url) })
			}
		}
	}
	return nodes
}

// acceptsOrigin reports whether n answers a browser request from origin.
func acceptsOrigin(t *testing.T, n *node, origin string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.url+"/api/rooms", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// join connects a Go player to n through its bots' listener and closes it
// when the test ends.
func (n *node) join(t *testing.T, name, room string) *player.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := player.Dial(ctx, player.Options{URL: "ws" + strings.TrimPrefix(n.bots.URL, "http") + "/ws/play", Name: name, Room: room, NoFollow: true})
	if err != nil {
		t.Fatalf("join %s to %s: %v", name, room, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// createRoom creates a public room on n and returns its id.
func (n *node) createRoom(t *testing.T) string {
	t.Helper()
	var room struct {
		ID  string `json:"id"`
		URL string `json:"url"`
	}
	postJSON(t, n.url+"/api/rooms", `{}`, &room)
	if room.URL != n.url {
		t.Fatalf("room %s created on %s has url %q", room.ID, n.url, room.URL)
	}
	return room.ID
}

// listed is an entry of GET /api/rooms with the node hosting the room.
type listed struct {
	ID      string `json:"id"`
	Players int    `json:"players"`
	URL     string `json:"url"`
}

// lists reports whether n's /api/rooms lists room at url with players.
func (n *node) lists(t *testing.T, room, url string, players int) bool {
	t.Helper()
	var list struct {
		Rooms []listed `json:"rooms"`
	}
	getJSON(t, n.url+"/api/rooms", &list)
	return slices.Contains(list.Rooms, listed{ID: room, Players: players, URL: url})
}

// gameNode is where the page's game client plays.
type gameNode struct {
	Node  string `json:"node"`
	Moves int    `json:"moves"`
}

func (tb *tab) gameNode() gameNode {
	tb.t.Helper()
	return eval[gameNode](tb, `(() => { const g = window.tickwire?.state().game; return g ? { node: g.node, moves: g.moves } : {}; })()`)
}

func hostOf(url string) string { return strings.TrimPrefix(url, "http://") }

// TestPageFollowsMovedToTheNodeHostingTheRoom: a link to a room of node B
// opened on node A joins the room on B (A answers `moved`), where the page
// plays with a Go bot; after a drop it resumes its seat on B.
func TestPageFollowsMovedToTheNodeHostingTheRoom(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	room := b.createRoom(t)
	bot := b.join(t, "bot", room)
	w := bot.Welcome()
	eventually(t, "a lists b's room", func() bool { return a.lists(t, room, b.url, 1) })
	tb := newTab(t)

	start := time.Now()
	tb.navigate(a.url + "/?room=" + room + "&name=ana")
	s := tb.waitState("joined on b", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0
	})
	t.Logf("page on a joined the room on b in %v", time.Since(start).Round(time.Millisecond))
	botKey := strconv.Itoa(int(bot.ID()))
	if s.Game.Room != room || s.Game.Players[botKey].Name != "bot" || len(s.Errors) != 0 {
		t.Fatalf("page in room %q with players %+v, errors %q; want room %s with the bot, no errors", s.Game.Room, s.Game.Players, s.Errors, room)
	}
	if gn := tb.gameNode(); gn.Node != b.url || gn.Moves != 1 {
		t.Fatalf("page plays on %q after %d moves, want %s after 1", gn.Node, gn.Moves, b.url)
	}
	if pa, pb := a.plays.Load(), b.plays.Load(); pa != 1 || pb != 1 {
		t.Errorf("player WebSockets: %d on a, %d on b; want 1 each", pa, pb)
	}
	if origin, search := eval[string](tb, "location.origin"), eval[string](tb, "location.search"); origin != a.url || search != "?room="+room+"&name=ana" {
		t.Errorf("page at %s%s, want it to stay at %s?room=%s&name=ana", origin, search, a.url, room)
	}
	if got := tb.text("#conn"); got != "connected" {
		t.Errorf("connection badge %q", got)
	}
	tb.waitHUD("the node", func(hud string) bool { return strings.Contains(hud, "node "+hostOf(b.url)) })
	joined := awaitMsg(t, bot, "ana joins", func(m *wire.Joined) bool { return m.Name == "ana" })
	if joined.ID != s.Game.ID {
		t.Errorf("bot saw ana join as %d; the page is %d", joined.ID, s.Game.ID)
	}
	eventually(t, "b lists two players", func() bool { return b.lists(t, room, b.url, 2) })
	eventually(t, "a lists two players on b", func() bool { return a.lists(t, room, b.url, 2) })

	// The page's keyboard moves its player on b; the bot sees it.
	ana := strconv.Itoa(int(s.Game.ID))
	first := s.Game.Players[ana]
	steerPage(t, tb, bot, s.Game.ID, first.X, w.W)
	if err := bot.Chat("hello from b"); err != nil {
		t.Fatal(err)
	}
	tb.waitState("chat from the bot", func(s pageState) bool { return hasEntry(s.Game.Chat, "chat", "hello from b") })

	// After a drop the page resumes its seat on b, not through a.
	drain(bot)
	b.ln.closeAll()
	s = tb.waitState("reconnected", func(s pageState) bool {
		return s.Game.Connection.State == "connected" && b.plays.Load() >= 2
	})
	if s.Game.ID != joined.ID {
		t.Errorf("id %d after the reconnect, was %d: the seat was not resumed", s.Game.ID, joined.ID)
	}
	if gn := tb.gameNode(); gn.Node != b.url || gn.Moves != 1 || a.plays.Load() != 1 {
		t.Errorf("after the reconnect: on %q after %d moves, %d WebSockets on a; want %s, 1, 1", gn.Node, gn.Moves, a.plays.Load(), b.url)
	}
	expectResumed(t, tb, bot)
}

// TestLobbyJoinsARoomOfAnotherNode: the lobby of node A lists B's rooms
// with B's address, and its Join button plays in B's room.
func TestLobbyJoinsARoomOfAnotherNode(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	remote := b.createRoom(t)
	local := a.createRoom(t)
	b.join(t, "bot", remote)
	eventually(t, "a lists both rooms", func() bool { return a.lists(t, remote, b.url, 1) && a.lists(t, local, a.url, 0) })
	tb := newTab(t)

	tb.navigate(a.url + "/")
	tb.do(chromedp.WaitVisible(chromedp.CSS(`#rooms tr[data-room="` + remote + `"] .node`)))
	tb.do(chromedp.WaitVisible(chromedp.CSS(`#rooms tr[data-room="` + local + `"]`)))
	if got := tb.text(`#rooms tr[data-room="` + remote + `"] .node`); got != hostOf(b.url) {
		t.Errorf("b's room shown at %q, want %q", got, hostOf(b.url))
	}
	if n := eval[int](tb, `document.querySelectorAll('#rooms tr[data-room="`+local+`"] .node').length`); n != 0 {
		t.Errorf("a's own room shown with a node (%d)", n)
	}

	tb.do(
		chromedp.SendKeys(chromedp.CSS("#name-input"), "bo"),
		chromedp.Click(chromedp.CSS(`#rooms tr[data-room="`+remote+`"] button.join`)),
	)
	s := tb.waitState("joined b's room", func(s pageState) bool {
		return s.Game != nil && s.Game.Connection.State == "connected" && s.Game.Tick > 0
	})
	if gn := tb.gameNode(); s.Game.Room != remote || gn.Node != b.url || len(s.Game.Players) != 2 || len(s.Errors) != 0 {
		t.Fatalf("page in %q on %q with %d players, errors %q; want %s on %s with 2", s.Game.Room, gn.Node, len(s.Game.Players), s.Errors, remote, b.url)
	}
	eventually(t, "b lists the page's player", func() bool { return b.lists(t, remote, b.url, 2) })
}

// fakeMover is a stand-in node that serves the page and answers every
// join with `moved` to another URL.
type fakeMover struct {
	hs     *httptest.Server
	active sync.WaitGroup

	mu    sync.Mutex // guards to and joins
	to    string     // where joins are moved
	joins []*wire.Join
}

func startFakeMover(t *testing.T) *fakeMover {
	t.Helper()
	f := &fakeMover{}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	page := web.Handler()
	f.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws/play" {
			page.ServeHTTP(w, r)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.active.Add(1)
		defer f.active.Done()
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(wait))
		_, frame, err := ws.ReadMessage()
		if err != nil {
			return
		}
		m, err := wire.DecodeClient(frame)
		j, ok := m.(*wire.Join)
		if err != nil || !ok {
			return
		}
		f.mu.Lock()
		f.joins = append(f.joins, j)
		to := f.to
		f.mu.Unlock()
		_ = ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Error{Code: wire.CodeMoved, Msg: "room is elsewhere", URL: to, Room: "over-there"}))
		_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(wire.CloseMoved, "moved"))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		f.hs.Close()
		f.active.Wait()
	})
	return f
}

func (f *fakeMover) moveTo(url string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.to = url
}

func (f *fakeMover) joined() []*wire.Join {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.joins)
}

// TestPageFollowsOneMoveOnly: two nodes that keep sending the page to each
// other get one join each; the page gives up with a reason, no loop.
func TestPageFollowsOneMoveOnly(t *testing.T) {
	first, second := startFakeMover(t), startFakeMover(t)
	first.moveTo(second.hs.URL)
	second.moveTo(first.hs.URL)
	tb := newTab(t)

	tb.navigate(first.hs.URL + "/?room=somewhere&name=ana")
	s := tb.waitState("gave up", func(s pageState) bool { return s.Game != nil && s.Game.Connection.State == "closed" })
	if !strings.Contains(s.Game.Connection.Reason, "moved again") {
		t.Errorf("closed with %q, want it to say it was moved again", s.Game.Connection.Reason)
	}
	if badge := tb.text("#conn"); !strings.HasPrefix(badge, "closed: moved again") {
		t.Errorf("badge %q", badge)
	}
	time.Sleep(1500 * time.Millisecond) // longer than the first reconnection delay
	j1, j2 := first.joined(), second.joined()
	if len(j1) != 1 || len(j2) != 1 {
		t.Fatalf("joins: %d on the first node, %d on the second; want 1 each", len(j1), len(j2))
	}
	if j1[0].Room != "somewhere" || j2[0].Room != "over-there" || j2[0].Name != "ana" || !slices.Equal(j2[0].Caps, j1[0].Caps) {
		t.Errorf("joins %+v then %+v; want the second for the room of the move, otherwise the same", j1[0], j2[0])
	}
	if gn := tb.gameNode(); gn.Node != second.hs.URL || gn.Moves != 1 {
		t.Errorf("page on %q after %d moves, want %s after 1", gn.Node, gn.Moves, second.hs.URL)
	}
}
