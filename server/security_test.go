package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/auth"
	"github.com/tickwire/tickwire/wire"
)

const secret = "test-secret"

func token(t *testing.T, name string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Mint(secret, "user-"+name, name, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do makes a request and returns its status and, for an error, its code.
// A request not answered within 10 s fails the test: a stream that is let
// in answers its headers at once, and its body (which does not end) is
// not read.
func do(t *testing.T, method, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 400 {
		return resp.StatusCode, ""
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e); err != nil {
		t.Fatalf("%s %s: %d with a body that is not a JSON error: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, e.Error.Code
}

func TestAuthOnEveryEndpoint(t *testing.T) {
	ts := start(t, Config{AuthSecret: secret})
	good := token(t, "ana", time.Hour)
	room := createRoomAuth(t, ts, good)
	bearer := http.Header{"Authorization": {"Bearer " + good}}
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "old", "exp": time.Now().Add(-time.Minute).Unix(),
	}).SignedString([]byte(secret))
	for _, path := range []string{"/api/rooms", "/api/ice", "/rooms/" + room + "/events", "/rooms/" + room + "/poll?after=0&timeout=1"} {
		if status, code := do(t, "GET", ts.http.URL+path, nil); status != 401 || code != "unauthorized" {
			t.Errorf("GET %s without a token: %d %q", path, status, code)
		}
		if status, _ := do(t, "GET", ts.http.URL+path, http.Header{"Authorization": {"Bearer " + expired}}); status != 401 {
			t.Errorf("GET %s with an expired token: %d", path, status)
		}
		if status, _ := do(t, "GET", ts.http.URL+path, bearer); status != 200 {
			t.Errorf("GET %s with a bearer token: %d", path, status)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		if status, _ := do(t, "GET", ts.http.URL+path+sep+"token="+good, nil); status != 200 {
			t.Errorf("GET %s with ?token=: %d", path, status)
		}
	}
	if status, _ := do(t, "POST", ts.http.URL+"/api/rooms", nil); status != 401 {
		t.Errorf("POST /api/rooms without a token: %d", status)
	}

	// Players: the token in join, in the URL, or refused with 4001 / 401.
	var je *player.JoinError
	if _, err := ts.dial("ana", room, ""); !errors.As(err, &je) || je.Code != wire.CodeUnauthorized || je.CloseCode != wire.CloseUnauthorized {
		t.Fatalf("join without a token: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := player.Dial(ctx, player.Options{URL: ts.ws, Name: "typed", Room: room, Token: good})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Welcome().Players[0].Name; got != "ana" {
		t.Fatalf("player named %q, want the token's name", got)
	}
	c2, err := player.Dial(ctx, player.Options{URL: ts.ws + "?token=" + good, Name: "ben", Room: room})
	if err != nil {
		t.Fatalf("token in the URL: %v", err)
	}
	c2.Close()
	if _, resp, err := websocket.DefaultDialer.Dial(ts.ws+"?token=garbage", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("bad token on upgrade: %v", err)
	}

	// Signaling: the token in join.
	sig := "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/ws/signal"
	for tok, want := range map[string]string{"": wire.SignalTypeError, good: wire.SignalTypeWelcome} {
		ws, _, err := websocket.DefaultDialer.Dial(sig, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = ws.WriteJSON(map[string]string{"type": "join", "call": room, "name": "ana", "token": tok})
		var m wire.SignalMessage
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := ws.ReadJSON(&m); err != nil || m.Type != want {
			t.Fatalf("signaling join with token %q: %+v %v", tok, m, err)
		}
		ws.Close()
	}
}

func createRoomAuth(t *testing.T, ts *testServer, tok string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.http.URL+"/api/rooms", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&info)
	if resp.StatusCode != 201 {
		t.Fatalf("create room: %d", resp.StatusCode)
	}
	return info.ID
}

func TestStreamsEndWhenTokenExpires(t *testing.T) {
	ts := start(t, Config{AuthSecret: secret, FeedHeartbeat: 200 * time.Millisecond})
	room := createRoomAuth(t, ts, token(t, "ana", time.Hour))
	brief := token(t, "brief", 1500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := player.Dial(ctx, player.Options{URL: ts.ws, Name: "brief", Room: room, Token: brief})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v := ts.watch(t, spectator.Options{Room: room, Token: brief})
	nextEvent(t, v, wire.EventRoom)
	if e := next[*wire.Error](t, c); e.Code != wire.CodeUnauthorized {
		t.Fatalf("error %+v", e)
	}
	if code := closed(t, c); code != wire.CloseUnauthorized {
		t.Fatalf("close %d when the token expired, want 4001", code)
	}
	select {
	case <-v.Done():
		var se *spectator.StatusError
		if !errors.As(v.Err(), &se) || se.Status != 401 {
			t.Fatalf("viewer ended with %v, want a 401 on reconnecting", v.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SSE stream outlived its token")
	}
}

func TestOriginRefusedAndCORS(t *testing.T) {
	ts := start(t, Config{Origins: []string{"https://game.example"}})
	room := createRoom(t, ts, `{}`)
	evil := http.Header{"Origin": {"https://evil.example"}}
	for _, path := range []string{"/api/rooms", "/rooms/" + room + "/poll", "/ws/play", "/ws/signal"} {
		if status, code := do(t, "GET", ts.http.URL+path, evil); status != 403 || code != "forbidden" {
			t.Errorf("GET %s from another origin: %d %q", path, status, code)
		}
	}
	if _, resp, err := websocket.DefaultDialer.Dial(ts.ws, evil); err == nil || resp.StatusCode != 403 {
		t.Fatalf("WebSocket from another origin: %v", err)
	}
	// An allowed origin gets CORS headers, and its preflight an answer.
	req, _ := http.NewRequest("OPTIONS", ts.http.URL+"/api/rooms", nil)
	req.Header.Set("Origin", "https://game.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://game.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	ok := http.Header{"Origin": {"https://game.example"}}
	if status, _ := do(t, "GET", ts.http.URL+"/api/rooms", ok); status != 200 {
		t.Fatalf("allowed origin: %d", status)
	}
	ws, _, err := websocket.DefaultDialer.Dial(ts.ws, ok)
	if err != nil {
		t.Fatalf("WebSocket from an allowed origin: %v", err)
	}
	ws.Close()
	// The page's own host is always allowed.
	self := http.Header{"Origin": {ts.http.URL}}
	if status, _ := do(t, "GET", ts.http.URL+"/api/rooms", self); status != 200 {
		t.Fatalf("same origin: %d", status)
	}
}

func TestLimits(t *testing.T) {
	ts := start(t, Config{MaxConns: 2, MaxRooms: 2, MaxSpectators: 1})
	a := ts.join(t, "ana", "auto")
	room := a.Welcome().Room
	ts.join(t, "ben", room)
	if _, resp, err := websocket.DefaultDialer.Dial(ts.ws, nil); err == nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("connection over the total: %v", err)
	}
	createRoom(t, ts, `{}`) // the second room
	resp, err := http.Post(ts.http.URL+"/api/rooms", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("room over the cap: %d", resp.StatusCode)
	}

	ts2 := start(t, Config{MaxSpectators: 1})
	p := ts2.join(t, "ana", "auto")
	v := ts2.watch(t, spectator.Options{Room: p.Welcome().Room})
	nextEvent(t, v, wire.EventRoom)
	if status, _ := do(t, "GET", ts2.http.URL+"/rooms/"+p.Welcome().Room+"/poll", nil); status != 503 {
		t.Fatalf("spectator over the room's cap: %d", status)
	}
}

func TestMetrics(t *testing.T) {
	ts := start(t, Config{PingEvery: 100 * time.Millisecond})
	p := ts.join(t, "ana", "auto")
	keepMoving(t, p)
	v := ts.watch(t, spectator.Options{Room: p.Welcome().Room})
	nextEvent(t, v, wire.EventSnap)
	_ = p.SendRaw([]byte{0xc1})
	closed(t, p)
	wants := []string{
		"tickwire_tick_duration_seconds_count", "tickwire_tick_overruns_total", "tickwire_rooms 1",
		`tickwire_connections{transport="sse"} 1`, `tickwire_spectators 1`, `tickwire_bytes_out_total{transport="websocket"}`,
		`tickwire_bytes_out_total{transport="sse"}`, "tickwire_rtt_seconds_count", "tickwire_snapshots_replaced_total",
		"tickwire_signaling_relays_total", fmt.Sprintf(`tickwire_rejections_total{reason=%q} 1`, wire.CodeBadMessage),
		"go_goroutines", "process_resident_memory_bytes",
	}
	// Each of these is counted by the time the events above have reached
	// the clients, or soon after (the first RTT sample comes with a pong):
	// scrape until every one is there, failing after a generous wait.
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(ts.http.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
		}
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %s after 10 s:\n%s", strings.Join(missing, ", "), body)
		}
		<-time.After(20 * time.Millisecond) // the next scrape
	}
}
