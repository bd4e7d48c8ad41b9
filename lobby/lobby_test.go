package lobby

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/game/shooter"
	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/internal/transport"
	"github.com/tickwire/tickwire/wire"
)

// The lobby's tests run real lobbies, rooms and player WebSockets on
// loopback (internal/transport, as the server uses it), and nodes joined by
// the in-process bus.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newLobby returns a lobby with the arena and shooter modes, shut down when
// the test ends.
func newLobby(t *testing.T, cfg Config) *Lobby {
	t.Helper()
	modes, err := game.NewCatalog(arena.Spec(), shooter.Spec())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Modes = modes
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	if cfg.Hz == 0 {
		cfg.Hz = 20
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return l
}

// playURL serves l's player WebSockets on loopback and returns their URL.
// The X-Client header of a request stands for the client address the
// server would have found (limits.ClientIP).
func playURL(t *testing.T, l *Lobby) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := transport.Upgrade(w, r, transport.Config{PingInterval: time.Second})
		if err != nil {
			return
		}
		l.ServePlayer(conn, PlayerOptions{IsTimeout: transport.IsTimeout, Client: r.Header.Get("X-Client")})
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// dial joins as name; the client closes when the test ends.
func dial(t *testing.T, url string, o player.Options) (*player.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o.URL = url
	c, err := player.Dial(ctx, o)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func mustDial(t *testing.T, url string, o player.Options) *player.Client {
	t.Helper()
	c, err := dial(t, url, o)
	if err != nil {
		t.Fatalf("join %s to %q: %v", o.Name, o.Room, err)
	}
	return c
}

// refused checks that a join is refused with code and close code.
func refused(t *testing.T, url string, o player.Options, code string, closeCode int) {
	t.Helper()
	_, err := dial(t, url, o)
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != code || je.CloseCode != closeCode {
		t.Fatalf("join %+v: %v, want %s and close %d", o, err, code, closeCode)
	}
}

// next returns c's next message of type T, skipping others, or fails
// after a generous wait.
func next[T wire.ServerMessage](t *testing.T, c *player.Client) T {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				var zero T
				t.Fatalf("connection ended waiting for %T: %v", zero, c.Err())
			}
			if v, ok := m.(T); ok {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("no %T within 10s", zero)
		}
	}
}

// until collects c's messages up to the chat line text (sent by anyone),
// which it does not include.
func until(t *testing.T, c *player.Client, text string) []wire.ServerMessage {
	t.Helper()
	var got []wire.ServerMessage
	for {
		m := next[wire.ServerMessage](t, c)
		if cl, ok := m.(*wire.ChatLine); ok && cl.Text == text {
			return got
		}
		if _, ok := m.(*wire.Snap); !ok {
			got = append(got, m)
		}
	}
}

// closeCode waits for c's connection to end and returns its close code.
func closeCode(t *testing.T, c *player.Client) int {
	t.Helper()
	select {
	case <-c.Done():
		return player.CloseCode(c.Err())
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed within 10s")
		return 0
	}
}

func count[T wire.ServerMessage](ms []wire.ServerMessage) int {
	n := 0
	for _, m := range ms {
		if _, ok := m.(T); ok {
			n++
		}
	}
	return n
}

func TestSessionJoinChatLeave(t *testing.T) {
	l := newLobby(t, Config{})
	url := playURL(t, l)
	a := mustDial(t, url, player.Options{Name: "ana", Room: wire.RoomAuto})
	w := a.Welcome()
	if w.Room == "" || w.Mode != "arena" || len(w.Players) != 1 || w.Resume == "" {
		t.Fatalf("welcome %+v", w)
	}
	b := mustDial(t, url, player.Options{Name: "ben", Room: w.Room})
	if j := next[*wire.Joined](t, a); j.Name != "ben" || j.ID != b.ID() {
		t.Fatalf("joined %+v", j)
	}
	if err := b.Chat("hello"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*player.Client{a, b} {
		if m := next[*wire.ChatLine](t, c); m.Text != "hello" || m.Name != "ben" || m.ID != b.ID() {
			t.Fatalf("chat %+v", m)
		}
	}
	// A second join on the session is refused, and the session goes on.
	if err := b.SendRaw(wire.MustEncode(&wire.Join{Name: "ben", Room: w.Room})); err != nil {
		t.Fatal(err)
	}
	if e := next[*wire.Error](t, b); e.Code != wire.CodeBadMessage {
		t.Fatalf("second join: %+v", e)
	}
	_ = b.Leave()
	if code := closeCode(t, b); code != wire.CloseNormal {
		t.Fatalf("close %d after leave", code)
	}
	if m := next[*wire.Left](t, a); m.ID != b.ID() || m.Reason != wire.LeftLeave {
		t.Fatalf("left %+v", m)
	}
	if st := l.Stats(); st.Rooms != 1 || st.Players != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestJoinRefusals(t *testing.T) {
	l := newLobby(t, Config{JoinWait: 300 * time.Millisecond, MaxRooms: 2})
	url := playURL(t, l)
	full, err := l.CreateRoom(RoomOptions{MaxPlayers: 1, Private: true})
	if err != nil {
		t.Fatal(err)
	}
	mustDial(t, url, player.Options{Name: "ana", Room: full.ID()})
	refused(t, url, player.Options{Name: "ben", Room: full.ID()}, wire.CodeRoomFull, wire.CloseRoomFull)
	refused(t, url, player.Options{Name: "ben", Room: "nosuchroom"}, wire.CodeNotFound, wire.CloseNotFound)
	refused(t, url, player.Options{Name: "ben", Room: wire.RoomAuto, Mode: "chess"}, wire.CodeNotFound, wire.CloseNotFound)
	// The second and last room; then auto finds no seat and may not make one.
	if _, err := l.CreateRoom(RoomOptions{Private: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateRoom(RoomOptions{}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("a third room: %v", err)
	}
	refused(t, url, player.Options{Name: "ben", Room: wire.RoomAuto}, wire.CodeRoomFull, wire.CloseRoomFull)

	// Raw: something else than join first, and no join in time.
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Ping{TS: 1}))
	if code := rawClose(t, ws); code != wire.CloseBadMessage {
		t.Fatalf("ping before join: close %d", code)
	}
	ws2, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	if code := rawClose(t, ws2); code != wire.CloseUnauthorized {
		t.Fatalf("no join: close %d", code)
	}
}

// rawClose reads ws until it closes and returns the close code.
func rawClose(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("read: %v", err)
		}
	}
}

func TestChatLimitAndFloodGuard(t *testing.T) {
	l := newLobby(t, Config{ChatRate: 0.001, ChatBurst: 2, Hz: 10, MessageRate: 2})
	url := playURL(t, l)
	a := mustDial(t, url, player.Options{Name: "ana", Room: wire.RoomAuto})
	b := mustDial(t, url, player.Options{Name: "ben", Room: a.Welcome().Room})
	for _, line := range []string{"one", "two", "three"} {
		_ = b.Chat(line)
	}
	if e := next[*wire.Error](t, b); e.Code != wire.CodeRateLimited {
		t.Fatalf("third line: %+v", e)
	}
	// The session goes on; then far beyond 2 messages/s (36 at once) the
	// flood guard closes it with 4029, and the seat is given up.
	for i := 0; i < 100 && b.Ping() == nil; i++ {
	}
	if code := closeCode(t, b); code != wire.CloseRateLimited {
		t.Fatalf("flood: close %d", code)
	}
	if m := next[*wire.Left](t, a); m.ID != b.ID() || m.Reason != wire.LeftKicked {
		t.Fatalf("left %+v", m)
	}
	// Negative limits lift them.
	l2 := newLobby(t, Config{ChatRate: -1, MessageRate: -1, Hz: 10})
	url2 := playURL(t, l2)
	c := mustDial(t, url2, player.Options{Name: "cy", Room: wire.RoomAuto})
	for i := 0; i < 100; i++ {
		_ = c.Chat(strconv.Itoa(i))
	}
	_ = c.Chat("end")
	if ms := until(t, c, "end"); count[*wire.Error](ms) != 0 || count[*wire.ChatLine](ms) != 100 {
		t.Fatalf("without limits: %d errors, %d lines", count[*wire.Error](ms), count[*wire.ChatLine](ms))
	}
}

func TestTypingOncePerSecondPerSeat(t *testing.T) {
	l := newLobby(t, Config{})
	url := playURL(t, l)
	a := mustDial(t, url, player.Options{Name: "ana", Room: wire.RoomAuto})
	b := mustDial(t, url, player.Options{Name: "ben", Room: a.Welcome().Room})
	next[*wire.Joined](t, a)
	for i := 0; i < 5; i++ {
		_ = a.Typing()
	}
	_ = a.Chat("mark1")
	if ms := until(t, b, "mark1"); count[*wire.TypingFrom](ms) != 1 {
		t.Fatalf("5 typing at once: %d forwarded", count[*wire.TypingFrom](ms))
	}
	if ms := until(t, a, "mark1"); count[*wire.Error](ms)+count[*wire.TypingFrom](ms) != 0 {
		t.Fatalf("the typist got %v", ms)
	}
	// The limit is the seat's: a resumed connection does not start afresh.
	_ = a.Close()
	a2 := mustDial(t, url, player.Options{Name: "ana", Room: a.Welcome().Room, Resume: a.Welcome().Resume})
	if a2.ID() != a.ID() {
		t.Fatalf("resumed as %d, was %d", a2.ID(), a.ID())
	}
	_ = a2.Typing()
	_ = a2.Chat("mark2")
	if ms := until(t, b, "mark2"); count[*wire.TypingFrom](ms) != 0 {
		t.Fatalf("a typing right after resuming was forwarded")
	}
	// The unit: due once TypingEvery has passed since the last one let
	// through.
	s := &room.Seat{}
	t0 := time.Unix(100, 0)
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {999 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {2 * time.Second, true}} {
		if got := s.TypingDue(t0.Add(c.at)); got != c.want {
			t.Fatalf("at %v: due %v", c.at, got)
		}
	}
}

func TestResumeWithinGraceAndAfter(t *testing.T) {
	l := newLobby(t, Config{Grace: 2 * time.Second})
	url := playURL(t, l)
	a := mustDial(t, url, player.Options{Name: "ana", Room: wire.RoomAuto})
	room := a.Welcome().Room
	b := mustDial(t, url, player.Options{Name: "ben", Room: room})
	next[*wire.Joined](t, a)
	// Ben drops and comes back: Ana sees neither left nor joined.
	_ = b.Close()
	b2 := mustDial(t, url, player.Options{Name: "ben", Room: room, Resume: b.Welcome().Resume})
	if b2.ID() != b.ID() || b2.Welcome().Room != room {
		t.Fatalf("resumed as %d in %s, was %d in %s", b2.ID(), b2.Welcome().Room, b.ID(), room)
	}
	_ = b2.Chat("back")
	if ms := until(t, a, "back"); count[*wire.Left](ms)+count[*wire.Joined](ms) != 0 {
		t.Fatalf("a resume within the grace period announced %v", ms)
	}
	// The same token on a second connection takes the seat over.
	b3 := mustDial(t, url, player.Options{Name: "ben", Room: room, Resume: b.Welcome().Resume})
	if code := closeCode(t, b2); code != wire.CloseNormal || b3.ID() != b.ID() {
		t.Fatalf("taken over: close %d, id %d", code, b3.ID())
	}
	// Gone past the grace period: left "disconnect", and the token joins
	// as new.
	_ = b3.Close()
	if m := next[*wire.Left](t, a); m.ID != b.ID() || m.Reason != wire.LeftDisconnect {
		t.Fatalf("left %+v", m)
	}
	b4 := mustDial(t, url, player.Options{Name: "ben", Room: room, Resume: b.Welcome().Resume})
	if b4.ID() == b.ID() {
		t.Fatal("an expired seat was resumed")
	}
	if j := next[*wire.Joined](t, a); j.ID != b4.ID() {
		t.Fatalf("joined %+v", j)
	}
}

func TestRoomRatePerClient(t *testing.T) {
	var rejected []string
	l := newLobby(t, Config{RoomRate: 0.5, RoomBurst: 2, MaxRooms: 4, OnReject: func(code string) { rejected = append(rejected, code) }})
	for i := 0; i < 2; i++ {
		if _, err := l.CreateRoom(RoomOptions{Client: "198.51.100.1", Private: true}); err != nil {
			t.Fatalf("room %d of the burst: %v", i+1, err)
		}
	}
	_, err := l.CreateRoom(RoomOptions{Client: "198.51.100.1"})
	var limited *RateLimitedError
	if !errors.As(err, &limited) || !errors.Is(err, ErrRateLimited) || limited.Retry <= 0 || limited.Retry > 2*time.Second {
		t.Fatalf("over the burst: %v", err)
	}
	if len(rejected) != 1 || rejected[0] != RejectRoomRate {
		t.Fatalf("rejections %v", rejected)
	}
	// Other clients, loopback and callers without an address are not
	// affected.
	for _, client := range []string{"198.51.100.2", "127.0.0.1"} {
		if _, err := l.CreateRoom(RoomOptions{Client: client, Private: true}); err != nil {
			t.Fatalf("room of %q: %v", client, err)
		}
	}
	// A full lobby refuses before the rate is charged.
	if _, err := l.CreateRoom(RoomOptions{Client: "198.51.100.3"}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("a fifth room: %v", err)
	}

	// Over HTTP: 429 with Retry-After, by the request's client address.
	l2 := newLobby(t, Config{RoomRate: 0.5, RoomBurst: 1})
	post := func(remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/rooms", strings.NewReader(`{"private":true}`))
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		l2.RoomsHandler().ServeHTTP(rec, req)
		return rec
	}
	if rec := post("198.51.100.1:1000"); rec.Code != http.StatusCreated {
		t.Fatalf("first room: %d", rec.Code)
	}
	rec := post("198.51.100.1:1001")
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "2" || e.Error.Code != "rate-limited" {
		t.Fatalf("second room: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := post("[::1]:1000"); rec.Code != http.StatusCreated {
		t.Fatalf("loopback: %d", rec.Code)
	}
	// A body cannot name the client.
	req := httptest.NewRequest("POST", "/api/rooms", strings.NewReader(`{"private":true,"Client":"127.0.0.1","client":"127.0.0.1"}`))
	req.RemoteAddr = "198.51.100.1:1002"
	rec = httptest.NewRecorder()
	l2.RoomsHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("a body naming a client: %d", rec.Code)
	}

	// auto making a room over the rate: rate-limited, close 4029; auto
	// finding a room is not charged.
	url := playURL(t, l2)
	as := http.Header{"X-Client": {"198.51.100.1"}}
	refused(t, url, player.Options{Name: "ana", Room: wire.RoomAuto, Header: as}, wire.CodeRateLimited, wire.CloseRateLimited)
	mustDial(t, url, player.Options{Name: "ben", Room: wire.RoomAuto})
	mustDial(t, url, player.Options{Name: "ana", Room: wire.RoomAuto, Header: as})

	// No limit when negative.
	l3 := newLobby(t, Config{RoomRate: -1})
	for i := 0; i < 20; i++ {
		if _, err := l3.CreateRoom(RoomOptions{Client: "198.51.100.1", Private: true}); err != nil {
			t.Fatalf("room %d without a limit: %v", i+1, err)
		}
	}
}

func TestConfigDefaultsAndNoLimit(t *testing.T) {
	modes, _ := game.NewCatalog(arena.Spec())
	d := Config{Modes: modes}.withDefaults()
	if d.MaxPlayers != 16 || d.ChatRate != 5 || d.ChatBurst != 20 || d.MessageRate != 60 || d.MaxRooms != 1000 || d.RoomRate != 1 || d.RoomBurst != 5 {
		t.Fatalf("defaults %+v", d)
	}
	n := Config{Modes: modes, MaxPlayers: -1, ChatRate: -1, ChatBurst: -1, MessageRate: -1, MaxRooms: -1, RoomRate: -1, RoomBurst: -1}.withDefaults()
	if n.MaxPlayers != MaxRoomSeats || n.ChatRate >= 0 || n.ChatBurst >= 0 || n.MessageRate >= 0 || n.MaxRooms >= 0 || n.RoomRate >= 0 || n.RoomBurst >= 0 {
		t.Fatalf("no limits %+v", n)
	}
	if lim := newLimiter(-1, 20); !lim.AllowN(time.Now(), 1<<20) {
		t.Fatal("a negative rate limits")
	}
	if lim := newLimiter(5, -1); !lim.AllowN(time.Now(), 1<<20) {
		t.Fatal("a negative burst limits")
	}
}

func TestMovedToTheNodeHostingTheRoom(t *testing.T) {
	b := bus.NewLocal()
	t.Cleanup(func() { _ = b.Close() })
	cfg := func(url string) Config {
		return Config{Bus: b, URL: url, DirectoryEvery: 50 * time.Millisecond, DirectoryTTL: 2 * time.Second}
	}
	la := newLobby(t, cfg("http://a.example:8080"))
	lb := newLobby(t, cfg("http://b.example:8080"))
	urlA, urlB := playURL(t, la), playURL(t, lb)
	p := mustDial(t, urlA, player.Options{Name: "ana", Room: wire.RoomAuto})
	room := p.Welcome().Room
	waitListing(t, lb, func(ls []Listing) bool {
		return len(ls) == 1 && ls[0].ID == room && ls[0].URL == "http://a.example:8080" && ls[0].Players == 1
	})
	if host, ok := lb.RemoteHost(room); !ok || host != la.Node() {
		t.Fatalf("RemoteHost %q %v, want %q", host, ok, la.Node())
	}
	moved := func(o player.Options) {
		t.Helper()
		o.NoFollow = true
		_, err := dial(t, urlB, o)
		var je *player.JoinError
		if !errors.As(err, &je) || je.Code != wire.CodeMoved || je.CloseCode != wire.CloseMoved || je.URL != "http://a.example:8080" || je.Room != room {
			t.Fatalf("join %+v on the other node: %v, want moved to %s", o, err, room)
		}
	}
	moved(player.Options{Name: "ben", Room: room})                            // by id
	moved(player.Options{Name: "ben", Room: wire.RoomAuto})                   // the fullest open room is there
	moved(player.Options{Name: "ben", Resume: p.Welcome().Resume})            // resume
	moved(player.Options{Name: "ben", Room: "x", Resume: p.Welcome().Resume}) // resume wins over the id
	// A mode the other node has no room of: made here.
	s := mustDial(t, urlB, player.Options{Name: "cy", Room: wire.RoomAuto, Mode: "shooter"})
	if r, err := lb.Room(s.Welcome().Room); err != nil || r.Mode() != "shooter" {
		t.Fatalf("shooter room on b: %v", err)
	}
	// A node that drains leaves the directory at once.
	la.Drain()
	waitListing(t, lb, func(ls []Listing) bool { return len(ls) == 1 && ls[0].Mode == "shooter" })
	refused(t, urlB, player.Options{Name: "ben", Room: room, NoFollow: true}, wire.CodeNotFound, wire.CloseNotFound)
}

// waitListing waits until l's listing satisfies ok.
func waitListing(t *testing.T, l *Lobby, ok func([]Listing) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(l.List()) {
		if time.Now().After(deadline) {
			t.Fatalf("listing %+v", l.List())
		}
		<-time.After(10 * time.Millisecond) // directory updates come every 50 ms
	}
}

// loadFrom is a node that becomes overloaded at the from-th question.
type loadFrom struct {
	asked atomic.Int64
	from  int64
}

func (l *loadFrom) Overloaded() bool          { return l.asked.Add(1) >= l.from }
func (l *loadFrom) RetryAfter() time.Duration { return 5 * time.Second }

// TestOverloadedWhileMatchmaking: a node that becomes overloaded between
// the session's check and the room it makes for an `auto` join refuses
// with `overloaded` and close 1013, as it does at the check (it used to
// say that the server was shutting down, close 1001).
func TestOverloadedWhileMatchmaking(t *testing.T) {
	load := &loadFrom{from: 2} // the session asks first, then CreateRoom
	l := newLobby(t, Config{Load: load})
	url := playURL(t, l)
	_, err := dial(t, url, player.Options{Name: "ana", Room: wire.RoomAuto})
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeOverloaded || je.CloseCode != wire.CloseTryAgainLater || je.Retry != 5 {
		t.Fatalf("join: %v (%+v), want overloaded, close 1013, retry 5", err, je)
	}
	if n := load.asked.Load(); n != 2 {
		t.Fatalf("the load was asked %d times, want 2 (the session, then CreateRoom)", n)
	}
}
