package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/wire"
)

func TestSnapshotsArriveAtTheTickRate(t *testing.T) {
	for _, hz := range []int{20, 30} {
		ts := start(t, Config{Hz: hz})
		c := ts.join(t, "ana", "auto")
		if c.Welcome().Hz != hz {
			t.Fatalf("welcome hz %d, want %d", c.Welcome().Hz, hz)
		}
		first := next[*wire.Snap](t, c)
		const window = 3 * time.Second
		deadline := time.After(window)
		count, last := 0, first.N
	loop:
		for {
			select {
			case m := <-c.Messages():
				if s, ok := m.(*wire.Snap); ok {
					if s.N <= last {
						t.Fatalf("tick numbers not increasing: %d after %d", s.N, last)
					}
					last = s.N
					count++
				}
			case <-deadline:
				break loop
			}
		}
		want := float64(hz) * window.Seconds()
		if math.Abs(float64(count)-want) > 0.1*want {
			t.Errorf("%d Hz: %d snapshots in %v, want %.0f ±10%%", hz, count, window, want)
		}
	}
}

func TestInputMovesPlayerAndAckFollowsSeq(t *testing.T) {
	ts := start(t, Config{})
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
	seq, err := c.Input(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var a *wire.Snap
	for a == nil || a.Ack != seq {
		a = next[*wire.Snap](t, c)
	}
	b := next[*wire.Snap](t, c)
	if b.Ack != seq {
		t.Fatalf("ack went from %d to %d with no new input", seq, b.Ack)
	}
	pa, pb := me(a), me(b)
	step := w.Speed / float64(w.Hz) * float64(b.N-a.N)
	if math.Abs((pb.X-pa.X)-dir*step) > 0.01 || pb.Y != pa.Y {
		t.Fatalf("moved (%.3f,%.3f) over ticks %d..%d, want (%.3f,0)", pb.X-pa.X, pb.Y-pa.Y, a.N, b.N, dir*step)
	}
	if pb.VX != dir*w.Speed || pb.VY != 0 {
		t.Fatalf("velocity (%v,%v), want (%v,0)", pb.VX, pb.VY, dir*w.Speed)
	}
	// A newer input stops the player; its seq becomes the ack.
	seq2, _ := c.Input(0, 0)
	for s := next[*wire.Snap](t, c); s.Ack != seq2; s = next[*wire.Snap](t, c) {
		if s.Ack != seq {
			t.Fatalf("ack %d is neither %d nor %d", s.Ack, seq, seq2)
		}
	}
	s1 := next[*wire.Snap](t, c)
	s2 := next[*wire.Snap](t, c)
	if me(s1).X != me(s2).X || me(s2).VX != 0 {
		t.Fatal("player still moving after a zero input")
	}
}

func TestPingPongAndRTTColumn(t *testing.T) {
	ts := start(t, Config{PingEvery: 200 * time.Millisecond})
	c := ts.join(t, "ana", "auto")
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	pong := next[*wire.Pong](t, c)
	now := float64(time.Now().UnixNano()) / 1e6
	if pong.TS > now || now-pong.TS > 5000 {
		t.Fatalf("pong ts %v does not echo a recent ping (now %v)", pong.TS, now)
	}
	if d := time.Since(time.UnixMilli(pong.ST)); d < -time.Second || d > 5*time.Second {
		t.Fatalf("pong st is %v off the clock", d)
	}
	if c.Stats().LastRTT <= 0 {
		t.Fatal("client measured no round trip from its pong")
	}
	// The server measures every player's round trip from ping control
	// frames and shows it in the rtt column.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := next[*wire.Snap](t, c)
		p := arena.FindPlayer(s, c.ID())
		if p == nil {
			t.Fatalf("own player %d missing from snap %d", c.ID(), s.N)
		}
		if p.RTT >= 1 && p.RTT < 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rtt column still %d", p.RTT)
		}
	}
}

func TestChatReachesEveryoneTypingOnlyOthers(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", a.Welcome().Room)
	c := ts.join(t, "cy", a.Welcome().Room)
	if err := b.Chat("hello, arena"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*player.Client{a, b, c} {
		line := next[*wire.ChatLine](t, p)
		if line.ID != b.ID() || line.Name != "ben" || line.Text != "hello, arena" || line.ST == 0 {
			t.Fatalf("chat line %+v", line)
		}
	}
	if err := b.Typing(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*player.Client{a, c} {
		if m := next[*wire.TypingFrom](t, p); m.ID != b.ID() {
			t.Fatalf("typing from %d, want %d", m.ID, b.ID())
		}
	}
	noMessage[*wire.TypingFrom](t, b, 300*time.Millisecond)
}

func TestJoinedAndWelcomePlayers(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", "auto")
	if b.Welcome().Room != a.Welcome().Room {
		t.Fatal("auto put two players in different rooms")
	}
	if j := next[*wire.Joined](t, a); j.ID != b.ID() || j.Name != "ben" {
		t.Fatalf("joined %+v", j)
	}
	if got := b.Welcome().Players; len(got) != 2 || got[0].Name != "ana" || got[1].Name != "ben" {
		t.Fatalf("welcome players %+v", got)
	}
}

func TestLeaveAnnouncesAndClosesNormally(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", a.Welcome().Room)
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	if code := closed(t, b); code != websocket.CloseNormalClosure {
		t.Fatalf("close %d after leave, want 1000", code)
	}
	if l := next[*wire.Left](t, a); l.ID != b.ID() || l.Reason != wire.LeftLeave {
		t.Fatalf("left %+v", l)
	}
}

func TestDisconnectHoldsSeatThenLeft(t *testing.T) {
	ts := start(t, Config{Grace: 700 * time.Millisecond})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", a.Welcome().Room)
	next[*wire.Joined](t, a)
	b.Close()
	noMessage[*wire.Left](t, a, 400*time.Millisecond)
	if l := next[*wire.Left](t, a); l.ID != b.ID() || l.Reason != wire.LeftDisconnect {
		t.Fatalf("left %+v", l)
	}
}

func TestResumeKeepsSeatWithoutLeftOrJoined(t *testing.T) {
	ts := start(t, Config{Grace: 10 * time.Second})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", a.Welcome().Room)
	next[*wire.Joined](t, a)
	bw := b.Welcome()
	b.Close()
	time.Sleep(200 * time.Millisecond)
	b2, err := ts.dial("ben", "auto", bw.Resume)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if w := b2.Welcome(); w.ID != bw.ID || w.Room != bw.Room || w.Resume != bw.Resume {
		t.Fatalf("resumed welcome %+v, want id %d in %s", w, bw.ID, bw.Room)
	}
	// Inputs are numbered afresh on the new connection.
	seq, _ := b2.Input(0.5, 0)
	for s := next[*wire.Snap](t, b2); s.Ack != seq; s = next[*wire.Snap](t, b2) {
	}
	timeout := time.After(500 * time.Millisecond)
	for {
		select {
		case m := <-a.Messages():
			switch m.(type) {
			case *wire.Left, *wire.Joined:
				t.Fatalf("others saw %T on a resume", m)
			}
			continue
		case <-timeout:
		}
		break
	}
	if infos := ts.Lobby().List(); len(infos) != 1 || infos[0].Players != 2 {
		t.Fatalf("rooms after resume: %+v", infos)
	}
}

func TestRefusedJoins(t *testing.T) {
	ts := start(t, Config{RoomIdle: 200 * time.Millisecond})
	_, err := ts.dial("ana", "no-such-room", "")
	var je *player.JoinError
	if !errors.As(err, &je) || je.Code != wire.CodeNotFound || je.CloseCode != wire.CloseNotFound {
		t.Fatalf("unknown room: %v", err)
	}

	id := createRoom(t, ts, `{"maxPlayers":2}`)
	ts.join(t, "ana", id)
	ts.join(t, "ben", id)
	_, err = ts.dial("cy", id, "")
	if !errors.As(err, &je) || je.Code != wire.CodeRoomFull || je.CloseCode != wire.CloseRoomFull {
		t.Fatalf("full room: %v", err)
	}

	ended := createRoom(t, ts, `{}`)
	deadline := time.Now().Add(5 * time.Second)
	for _, err := ts.Lobby().Room(ended); err == nil; _, err = ts.Lobby().Room(ended) {
		if time.Now().After(deadline) {
			t.Fatal("idle room did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = ts.dial("dee", ended, "")
	if !errors.As(err, &je) || je.CloseCode != wire.CloseNotFound {
		t.Fatalf("ended room: %v", err)
	}
}

func TestMalformedFrameClosesOnlyThatPlayer(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	b := ts.join(t, "ben", a.Welcome().Room)
	next[*wire.Joined](t, a)
	if err := b.SendRaw([]byte{0xc1, 0x00}); err != nil {
		t.Fatal(err)
	}
	if e := next[*wire.Error](t, b); e.Code != wire.CodeBadMessage {
		t.Fatalf("error %+v", e)
	}
	if code := closed(t, b); code != wire.CloseBadMessage {
		t.Fatalf("close %d, want 4000", code)
	}
	if l := next[*wire.Left](t, a); l.ID != b.ID() || l.Reason != wire.LeftKicked {
		t.Fatalf("left %+v", l)
	}
	s1 := next[*wire.Snap](t, a)
	s2 := next[*wire.Snap](t, a)
	if s2.N <= s1.N || a.Err() != nil {
		t.Fatal("the other player stopped receiving snapshots")
	}
}

func TestBadFieldIsDroppedSessionGoesOn(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	for _, frame := range []map[string]any{
		{"t": "input", "seq": 1, "dx": 3.5, "dy": 0},
		{"t": "input", "seq": 2, "dx": "left", "dy": 0},
		{"t": "chat", "text": ""},
	} {
		raw, _ := msgpackMarshal(frame)
		if err := a.SendRaw(raw); err != nil {
			t.Fatal(err)
		}
		if e := next[*wire.Error](t, a); e.Code != wire.CodeBadMessage {
			t.Fatalf("%v: error %+v", frame, e)
		}
	}
	if err := a.Chat("still here"); err != nil {
		t.Fatal(err)
	}
	if line := next[*wire.ChatLine](t, a); line.Text != "still here" {
		t.Fatalf("chat %+v", line)
	}
}

func TestFirstMessageRules(t *testing.T) {
	ts := start(t, Config{JoinWait: 300 * time.Millisecond})
	dialRaw := func() *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(ts.ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	closeCode := func(ws *websocket.Conn) int {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return player.CloseCode(err)
			}
		}
	}
	if code := closeCode(dialRaw()); code != wire.CloseUnauthorized {
		t.Fatalf("no join: close %d, want 4001", code)
	}
	ws := dialRaw()
	_ = ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Chat{Text: "hi"}))
	if code := closeCode(ws); code != wire.CloseBadMessage {
		t.Fatalf("chat before join: close %d, want 4000", code)
	}
	ws = dialRaw()
	_ = ws.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{0x90}, 5000))
	if code := closeCode(ws); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversize frame: close %d, want 1009", code)
	}
}

func TestChatRateLimitAndFlood(t *testing.T) {
	ts := start(t, Config{})
	a := ts.join(t, "ana", "auto")
	for i := 0; i < 30; i++ {
		_ = a.Chat("spam")
	}
	if e := next[*wire.Error](t, a); e.Code != wire.CodeRateLimited {
		t.Fatalf("error %+v", e)
	}
	if a.Err() != nil {
		t.Fatal("chat over the limit closed the connection")
	}
	b := ts.join(t, "ben", "auto")
	for i := 0; i < 5000 && b.Err() == nil; i++ {
		if b.Ping() != nil {
			break
		}
	}
	if code := closed(t, b); code != wire.CloseRateLimited {
		t.Fatalf("flood: close %d, want 4029", code)
	}
}

func TestRoomsAPI(t *testing.T) {
	ts := start(t, Config{})
	pub := createRoom(t, ts, `{"maxPlayers":4}`)
	priv := createRoom(t, ts, `{"private":true}`)
	other := createRoom(t, ts, ``)
	ts.join(t, "ana", pub)
	ts.join(t, "ben", priv)

	var list struct {
		Rooms []struct {
			ID         string `json:"id"`
			Mode       string `json:"mode"`
			Players    int    `json:"players"`
			MaxPlayers int    `json:"maxPlayers"`
			Spectators int    `json:"spectators"`
			Hz         int    `json:"hz"`
		} `json:"rooms"`
	}
	getJSON(t, ts.http.URL+"/api/rooms", &list)
	if len(list.Rooms) != 2 || list.Rooms[0].ID != pub || list.Rooms[0].Players != 1 ||
		list.Rooms[0].MaxPlayers != 4 || list.Rooms[0].Hz != 30 || list.Rooms[0].Mode != "arena" || list.Rooms[1].ID != other {
		t.Fatalf("rooms %+v", list.Rooms)
	}
	// auto picks the fullest public room with a free seat, never a
	// private one.
	if c := ts.join(t, "cy", "auto"); c.Welcome().Room != pub {
		t.Fatalf("auto joined %s, want %s", c.Welcome().Room, pub)
	}
	// a private room is joined by id.
	if c := ts.join(t, "dee", priv); c.Welcome().Room != priv {
		t.Fatal("private room not joinable by id")
	}

	for body, want := range map[string]int{`{"mode":"chess"}`: 400, `{"maxPlayers":1000}`: 400, `{`: 400} {
		resp, err := http.Post(ts.http.URL+"/api/rooms", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != want || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s: %d %+v", body, resp.StatusCode, e)
		}
	}
}

func TestShutdownClosesWith1001AndLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	s := New(testConfig(Config{Drain: 100 * time.Millisecond}))
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	url := "ws://" + ln.Addr().String() + "/ws/play"
	var clients []*player.Client
	for i := 0; i < 5; i++ {
		c, err := player.Dial(context.Background(), player.Options{URL: url, Name: "p"})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	cancel()
	time.Sleep(30 * time.Millisecond)
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz while draining: %d", resp.StatusCode)
	}
	if _, err := player.Dial(context.Background(), player.Options{URL: url, Name: "late"}); err == nil {
		t.Fatal("a join was accepted while draining")
	}
	for _, c := range clients {
		if code := closed(t, c); code != websocket.CloseGoingAway {
			t.Fatalf("close %d, want 1001", code)
		}
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	checkGoroutines(t, base)
}

func createRoom(t *testing.T, ts *testServer, body string) string {
	t.Helper()
	resp, err := http.Post(ts.http.URL+"/api/rooms", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusCreated || !wire.ValidID(info.ID) {
		t.Fatalf("create room %s: %d %v %+v", body, resp.StatusCode, err, info)
	}
	return info.ID
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
