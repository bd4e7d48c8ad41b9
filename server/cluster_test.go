package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/internal/natstest"
	"github.com/tickwire/tickwire/wire"
)

// startNode runs a node with testConfig(cfg) joined to the NATS server at
// natsURL on 127.0.0.1, with its listener's address as its public URL, and
// stops it when the test ends (unless the test has stopped it).
func startNode(t *testing.T, natsURL string, cfg Config) *testServer {
	t.Helper()
	cfg = testConfig(cfg)
	hs := httptest.NewUnstartedServer(nil)
	cfg.NATS = natsURL
	cfg.PublicURL = "http://" + hs.Listener.Addr().String()
	s, err := Open(cfg)
	if err != nil {
		hs.Close()
		t.Fatalf("open node: %v", err)
	}
	hs.Config.Handler = s.Handler()
	hs.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return &testServer{Server: s, http: hs, ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws/play"}
}

// startNodes runs n nodes on one embedded NATS server, each telling the
// others its rooms every 100 ms.
func startNodes(t *testing.T, n int, cfg Config) []*testServer {
	t.Helper()
	url := natstest.Start(t)
	if cfg.DirectoryEvery == 0 {
		cfg.DirectoryEvery = 100 * time.Millisecond
	}
	nodes := make([]*testServer, n)
	for i := range nodes {
		nodes[i] = startNode(t, url, cfg)
	}
	return nodes
}

// listing is an entry of GET /api/rooms as a client reads it.
type listing struct {
	ID         string `json:"id"`
	Players    int    `json:"players"`
	MaxPlayers int    `json:"maxPlayers"`
	Spectators int    `json:"spectators"`
	URL        string `json:"url"`
	Private    bool   `json:"private"`
}

func listRooms(t *testing.T, ts *testServer) []listing {
	t.Helper()
	var list struct{ Rooms []listing }
	getJSON(t, ts.http.URL+"/api/rooms", &list)
	return list.Rooms
}

// describe returns "id@url/players" for each room, sorted.
func describe(rooms []listing) string {
	var s []string
	for _, r := range rooms {
		s = append(s, fmt.Sprintf("%s@%s/%d", r.ID, r.URL, r.Players))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// waitListing waits until ts lists exactly want (see describe), and fails
// after d.
func waitListing(t *testing.T, ts *testServer, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := describe(listRooms(t, ts))
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s lists %q, want %q", ts.http.URL, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func entry(id string, ts *testServer, players int) string {
	return fmt.Sprintf("%s@%s/%d", id, ts.http.URL, players)
}

func entries(e ...string) string {
	sort.Strings(e)
	return strings.Join(e, " ")
}

func TestDirectoryListsTheRoomsOfEveryNode(t *testing.T) {
	nodes := startNodes(t, 3, Config{})
	a, b, c := nodes[0], nodes[1], nodes[2]
	ra := createRoom(t, a, `{}`)
	rb := createRoom(t, b, `{"maxPlayers":4}`)
	rc := createRoom(t, c, `{}`)
	createRoom(t, c, `{"private":true}`)
	p := a.join(t, "ana", ra)
	want := entries(entry(ra, a, 1), entry(rb, b, 0), entry(rc, c, 0))
	for _, n := range nodes {
		waitListing(t, n, want, 3*time.Second)
	}
	// Fullest first, on any node, with each room's own seats.
	rooms := listRooms(t, c)
	if rooms[0].ID != ra || rooms[0].Players != 1 {
		t.Errorf("first listed on c: %+v, want %s with 1 player", rooms[0], ra)
	}
	for _, r := range rooms {
		if r.ID == rb && r.MaxPlayers != 4 {
			t.Errorf("room %s listed with %d seats, want 4", rb, r.MaxPlayers)
		}
	}
	// The answer to POST carries the node's URL too.
	resp, err := http.Post(b.http.URL+"/api/rooms", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var created listing
	if err := decodeJSON(resp, &created); err != nil || created.URL != b.http.URL {
		t.Fatalf("POST answer %+v (%v), want url %s", created, err, b.http.URL)
	}
	_ = p.Leave()
}

// A join for a room of another node is answered `moved` with that node's
// URL and close 4307; the Go client follows it and plays there.
func TestJoinIsMovedToTheNodeHostingTheRoom(t *testing.T) {
	nodes := startNodes(t, 2, Config{})
	a, b := nodes[0], nodes[1]
	room := createRoom(t, a, `{}`)
	ana := a.join(t, "ana", room)
	waitListing(t, b, entries(entry(room, a, 1)), 3*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := player.Dial(ctx, player.Options{URL: b.ws, Name: "bo", Room: room, NoFollow: true})
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeMoved || je.CloseCode != wire.CloseMoved || je.URL != a.http.URL || je.Room != room {
		t.Fatalf("join at the other node: %v (%+v), want moved to %s with close %d", err, je, a.http.URL, wire.CloseMoved)
	}

	bo := b.join(t, "bo", room) // follows the move
	if bo.Welcome().Room != room || bo.URL() != a.ws {
		t.Fatalf("followed to %s room %s, want %s room %s", bo.URL(), bo.Welcome().Room, a.ws, room)
	}
	if got := next[*wire.Joined](t, ana); got.Name != "bo" {
		t.Fatalf("ana saw %+v join", got)
	}
	if err := bo.Chat("hello from b"); err != nil {
		t.Fatal(err)
	}
	if got := next[*wire.ChatLine](t, ana); got.Text != "hello from b" || got.ID != bo.ID() {
		t.Fatalf("ana got %+v", got)
	}

	// A room no node has is still not-found.
	_, err = b.dial("cy", "nosuchroom", "")
	if !errors.As(err, &je) || je.Code != wire.CodeNotFound || je.CloseCode != wire.CloseNotFound {
		t.Fatalf("unknown room: %v", err)
	}
}

// A resume token presented to another node is sent to the room's node,
// and takes the seat back there.
func TestResumeOnAnotherNodeIsMovedToTheSeat(t *testing.T) {
	nodes := startNodes(t, 2, Config{})
	a, b := nodes[0], nodes[1]
	ana := a.join(t, "ana", "auto")
	room := ana.Welcome().Room
	bo := a.join(t, "bo", room)
	waitListing(t, b, entries(entry(room, a, 2)), 3*time.Second)
	id, token := bo.ID(), bo.Welcome().Resume
	bo.Close()
	back, err := b.dial("bo", "auto", token)
	if err != nil {
		t.Fatalf("resume through b: %v", err)
	}
	defer back.Close()
	if back.ID() != id || back.Welcome().Room != room || back.URL() != a.ws {
		t.Fatalf("resumed as %d in %s at %s, want %d in %s at %s", back.ID(), back.Welcome().Room, back.URL(), id, room, a.ws)
	}
	noMessage[*wire.Left](t, ana, 300*time.Millisecond)
}

// `auto` on a node considers every node's rooms: the fullest room with a
// free seat wins wherever it is; a tie goes to the node's own room; full
// rooms elsewhere are passed over.
func TestAutoMatchmakingConsidersEveryNode(t *testing.T) {
	nodes := startNodes(t, 3, Config{})
	a, b, c := nodes[0], nodes[1], nodes[2]
	big := createRoom(t, a, `{"maxPlayers":3}`)
	a.join(t, "a1", big)
	a.join(t, "a2", big)
	small := createRoom(t, b, `{}`)
	b.join(t, "b1", small)
	want := entries(entry(big, a, 2), entry(small, b, 1))
	waitListing(t, c, want, 3*time.Second)

	// From c, which has no room: the fullest room, on a.
	p := c.join(t, "cy", "auto")
	if p.Welcome().Room != big || p.URL() != a.ws {
		t.Fatalf("auto from c went to %s at %s, want %s at %s", p.Welcome().Room, p.URL(), big, a.ws)
	}
	// a's room is now full: from c, b's room.
	waitListing(t, c, entries(entry(big, a, 3), entry(small, b, 1)), 3*time.Second)
	q := c.join(t, "dee", "auto")
	if q.Welcome().Room != small || q.URL() != b.ws {
		t.Fatalf("auto from c went to %s at %s, want %s at %s", q.Welcome().Room, q.URL(), small, b.ws)
	}
	// c's own room with as many players as b's wins the tie on c.
	waitListing(t, c, entries(entry(big, a, 3), entry(small, b, 2)), 3*time.Second)
	own := createRoom(t, c, `{}`)
	c.join(t, "c1", own)
	c.join(t, "c2", own)
	r := c.join(t, "eve", "auto")
	if r.Welcome().Room != own || r.URL() != c.ws {
		t.Fatalf("auto from c went to %s at %s, want its own %s", r.Welcome().Room, r.URL(), own)
	}
}

// A node that dies (its NATS connection drops, so no goodbye) leaves the
// other nodes' directory within a few seconds; one that shuts down leaves
// at once. Joins for their rooms are then not-found.
func TestDeadNodesLeaveTheDirectory(t *testing.T) {
	nodes := startNodes(t, 3, Config{DirectoryEvery: time.Second}) // the defaults: every 1s, kept 3s
	a, b, c := nodes[0], nodes[1], nodes[2]
	ra := createRoom(t, a, `{}`)
	rb := createRoom(t, b, `{}`)
	rc := createRoom(t, c, `{}`)
	waitListing(t, b, entries(entry(ra, a, 0), entry(rb, b, 0), entry(rc, c, 0)), 3*time.Second)

	a.bus.(*bus.NATS).Conn().Close() // a is cut off: it says nothing more
	took := waitListing(t, b, entries(entry(rb, b, 0), entry(rc, c, 0)), 6*time.Second)
	if took < 1500*time.Millisecond || took > 5*time.Second {
		t.Errorf("a's room left b's directory after %v, want 2-5 s (3 s after a's last update)", took)
	}
	waitListing(t, c, entries(entry(rb, b, 0), entry(rc, c, 0)), time.Second)
	_, err := b.dial("bo", ra, "")
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeNotFound {
		t.Fatalf("join for the dead node's room: %v, want not-found", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := waitListing(t, b, entries(entry(rb, b, 0)), 2*time.Second); took > 500*time.Millisecond {
		t.Errorf("a node that shut down left the directory after %v", took)
	}
}

// Without -nats a node is alone, needs nothing else, and lists its rooms
// with the address it listens on.
func TestSingleNodeNeedsNoNATS(t *testing.T) {
	s := New(testConfig(Config{Addr: "127.0.0.1:0", Drain: 10 * time.Millisecond}))
	if _, ok := s.bus.(*bus.Local); !ok {
		t.Fatalf("bus %T, want in-process", s.bus)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	ts := &testServer{Server: s, http: &httptest.Server{URL: "http://" + ln.Addr().String()}, ws: "ws://" + ln.Addr().String() + "/ws/play"}
	p := ts.join(t, "ana", "auto")
	rooms := listRooms(t, ts)
	if len(rooms) != 1 || rooms[0].ID != p.Welcome().Room || rooms[0].URL != "http://"+ln.Addr().String() {
		t.Fatalf("rooms %+v, want %s at http://%s", rooms, p.Welcome().Room, ln.Addr())
	}
}

func TestOpenFailsWithoutTheNATSServer(t *testing.T) {
	s, err := Open(testConfig(Config{NATS: "nats://127.0.0.1:1"}))
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Open succeeded with no NATS server")
	}
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
