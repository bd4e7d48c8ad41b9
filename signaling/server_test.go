package signaling

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/tickwire/tickwire/internal/transport"
	"github.com/tickwire/tickwire/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer runs a Server behind httptest with the contract's paths.
type testServer struct {
	*Server
	ts *httptest.Server
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s := New(cfg)
	mux := http.NewServeMux()
	mux.Handle("GET /ws/signal", s)
	mux.Handle("/api/ice", s.ICEHandler())
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return &testServer{s, ts}
}

func (s *testServer) wsURL() string {
	return "ws" + strings.TrimPrefix(s.ts.URL, "http") + "/ws/signal"
}

// client is a raw signaling client.
type client struct {
	t  *testing.T
	ws *websocket.Conn
}

func (s *testServer) dial(t *testing.T) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(s.wsURL(), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &client{t: t, ws: ws}
}

// join dials and joins call, returning the client and its welcome.
func (s *testServer) join(t *testing.T, call, name string) (*client, wire.SignalMessage) {
	t.Helper()
	c := s.dial(t)
	c.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: call, Name: name})
	w := c.recv()
	if w.Type != wire.SignalTypeWelcome || w.ID == "" || w.Call != call {
		t.Fatalf("join %s: got %+v, want a welcome", name, w)
	}
	return c, w
}

func (c *client) send(v any) {
	c.t.Helper()
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) recv() wire.SignalMessage {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	var m wire.SignalMessage
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("recv %s: %v", data, err)
	}
	return m
}

func (c *client) expectError(code string) {
	c.t.Helper()
	if m := c.recv(); m.Type != wire.SignalTypeError || m.Code != code || m.Message == "" {
		c.t.Fatalf("got %+v, want error %s", m, code)
	}
}

// expectClose reads until the connection ends and checks the close code.
func (c *client) expectClose(code int) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := c.ws.ReadMessage()
		if err == nil {
			c.t.Fatalf("got %s, want close %d", data, code)
		}
		if got := transport.CloseCode(err); got != code {
			c.t.Fatalf("connection ended with %v, want close %d", err, code)
		}
		return
	}
}

func offer(to, sdp string) wire.SignalMessage {
	return wire.SignalMessage{Type: wire.SignalTypeOffer, To: to, SDP: sdp}
}

// checkRelay checks that a message from a reaches b.
func checkRelay(t *testing.T, a *client, aID string, b *client, bID string) {
	t.Helper()
	a.send(offer(bID, "v=0 check"))
	if m := b.recv(); m.Type != wire.SignalTypeOffer || m.From != aID || m.SDP != "v=0 check" {
		t.Fatalf("relay: got %+v", m)
	}
}

func TestJoinPresenceAndLeave(t *testing.T) {
	s := newTestServer(t, Config{})
	a, wa := s.join(t, "call-1", "ana")
	if len(wa.Peers) != 0 || wa.ICEServers == nil || len(wa.ICEServers) != 0 {
		t.Fatalf("first welcome: %+v", wa)
	}
	b, wb := s.join(t, "call-1", "bo")
	if len(wb.Peers) != 1 || wb.Peers[0] != (wire.SignalPeer{ID: wa.ID, Name: "ana"}) {
		t.Fatalf("second welcome peers: %+v", wb.Peers)
	}
	if wa.ID == wb.ID || len(wa.ID) != 16 {
		t.Fatalf("ids %q %q", wa.ID, wb.ID)
	}
	if m := a.recv(); m.Type != wire.SignalTypePeerJoined || m.ID != wb.ID || m.Name != "bo" {
		t.Fatalf("got %+v, want peer-joined", m)
	}
	if st := s.Stats(); st.Calls != 1 || st.Peers != 2 || st.Conns != 2 {
		t.Fatalf("stats %+v", st)
	}

	b.send(wire.SignalMessage{Type: wire.SignalTypeLeave})
	b.expectClose(wire.SignalCloseNormal)
	if m := a.recv(); m.Type != wire.SignalTypePeerLeft || m.ID != wb.ID {
		t.Fatalf("got %+v, want peer-left", m)
	}
	a.send(wire.SignalMessage{Type: wire.SignalTypeLeave})
	a.expectClose(wire.SignalCloseNormal)
	waitFor(t, func() bool { return s.Stats() == Stats{} })
}

func TestRelay(t *testing.T) {
	s := newTestServer(t, Config{})
	a, wa := s.join(t, "c1", "a")
	b, wb := s.join(t, "c1", "b")
	a.recv() // peer-joined b
	_, wc := s.join(t, "c2", "c")

	// from is overwritten, whatever the sender wrote.
	a.send([]byte(`{"type":"offer","to":"` + wb.ID + `","sdp":"v=0 a","from":"` + wc.ID + `"}`))
	if m := b.recv(); m.Type != wire.SignalTypeOffer || m.From != wa.ID || m.SDP != "v=0 a" || m.To != wb.ID {
		t.Fatalf("relayed offer: %+v", m)
	}
	b.send(wire.SignalMessage{Type: wire.SignalTypeAnswer, To: wa.ID, SDP: "v=0 b", From: wa.ID})
	if m := a.recv(); m.Type != wire.SignalTypeAnswer || m.From != wb.ID || m.SDP != "v=0 b" {
		t.Fatalf("relayed answer: %+v", m)
	}
	cand := `{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"uf"}`
	a.send([]byte(`{"type":"ice-candidate","to":"` + wb.ID + `","candidate":` + cand + `}`))
	if m := b.recv(); m.Type != wire.SignalTypeICECandidate || m.From != wa.ID || string(m.Candidate) != cand {
		t.Fatalf("relayed candidate: %+v", m)
	}
	a.send([]byte(`{"type":"ice-candidate","to":"` + wb.ID + `","candidate":null}`))
	if m := b.recv(); m.Type != wire.SignalTypeICECandidate || string(m.Candidate) != "null" {
		t.Fatalf("relayed end of candidates: %+v", m)
	}

	// Another call's peer, oneself and unknown ids are refused.
	for _, to := range []string{wc.ID, wa.ID, "0123456789abcdef"} {
		a.send(offer(to, "v=0"))
		a.expectError(wire.SignalErrUnknownPeer)
	}
	checkRelay(t, a, wa.ID, b, wb.ID)
	waitFor(t, func() bool { st := s.Stats(); return st.Relayed == 5 && st.Errors == 3 })
}

func TestSizeLimits(t *testing.T) {
	s := newTestServer(t, Config{})
	a, wa := s.join(t, "c", "a")
	b, wb := s.join(t, "c", "b")
	a.recv()

	a.send(offer(wb.ID, strings.Repeat("x", wire.SignalMaxSDP+1)))
	a.expectError(wire.SignalErrTooBig)
	a.send(offer(wb.ID, strings.Repeat("x", wire.SignalMaxSDP))) // at the limit: relayed
	if m := b.recv(); len(m.SDP) != wire.SignalMaxSDP {
		t.Fatalf("sdp at the limit: got %d bytes", len(m.SDP))
	}

	c, wc := s.join(t, "c", "c")
	a.recv()
	b.recv()
	c.send([]byte(`{"type":"leave","pad":"` + strings.Repeat("x", wire.SignalMaxFrame) + `"}`))
	c.expectClose(wire.SignalCloseTooBig)
	for _, x := range []*client{a, b} {
		if m := x.recv(); m.Type != wire.SignalTypePeerLeft || m.ID != wc.ID {
			t.Fatalf("got %+v, want peer-left", m)
		}
	}
	checkRelay(t, a, wa.ID, b, wb.ID)
}

func TestRateLimit(t *testing.T) {
	s := newTestServer(t, Config{RelayRate: 5, RelayBurst: 20})
	a, wa := s.join(t, "c", "a")
	b, wb := s.join(t, "c", "b")
	a.recv()

	const flood = 60
	for i := range flood {
		a.send(offer(wb.ID, "v=0 "+strconv.Itoa(i)))
	}
	limited := 0
	for range flood - 20 {
		a.expectError(wire.SignalErrRateLimited)
		limited++
	}
	// The burst got through, in order; the connection stays.
	for i := range 20 {
		if m := b.recv(); m.SDP != "v=0 "+strconv.Itoa(i) {
			t.Fatalf("relayed %d: %+v", i, m)
		}
	}
	b.send(offer(wa.ID, "v=0 back"))
	if m := a.recv(); m.SDP != "v=0 back" {
		t.Fatalf("got %+v", m)
	}
	time.Sleep(300 * time.Millisecond) // refills at least one token
	checkRelay(t, a, wa.ID, b, wb.ID)
}

func TestBadMessages(t *testing.T) {
	s := newTestServer(t, Config{})
	a, wa := s.join(t, "c", "a")
	b, wb := s.join(t, "c", "b")
	a.recv()

	// A known type with a bad field is dropped; the session goes on.
	b.send([]byte(`{"type":"offer","sdp":"v=0"}`))
	b.expectError(wire.SignalErrBadMessage)
	b.send([]byte(`{"type":"no-such-type"}`))
	b.expectError(wire.SignalErrBadMessage)
	b.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "c", Name: "again"})
	b.expectError(wire.SignalErrBadMessage)
	checkRelay(t, b, wb.ID, a, wa.ID)

	// Not JSON: bad-message and close 4000; the others are told it left.
	b.send([]byte("hello"))
	b.expectError(wire.SignalErrBadMessage)
	b.expectClose(wire.SignalCloseBadMessage)
	if m := a.recv(); m.Type != wire.SignalTypePeerLeft || m.ID != wb.ID {
		t.Fatalf("got %+v, want peer-left", m)
	}

	// Before join, anything else than a valid join closes with 4000.
	for _, first := range []string{`{"type":"offer","to":"x","sdp":"v"}`, `{"type":"join","call":"bad call","name":"x"}`, `]`} {
		c := s.dial(t)
		c.send([]byte(first))
		c.expectError(wire.SignalErrBadMessage)
		c.expectClose(wire.SignalCloseBadMessage)
	}

	c, wc := s.join(t, "c", "c")
	a.recv()
	checkRelay(t, c, wc.ID, a, wa.ID)
}

func TestJoinTimeout(t *testing.T) {
	s := newTestServer(t, Config{JoinTimeout: 200 * time.Millisecond})
	c := s.dial(t)
	start := time.Now()
	c.expectError(wire.SignalErrUnauthorized)
	c.expectClose(wire.SignalCloseUnauthorized)
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
}

func TestDefaultJoinTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 5 s")
	}
	s := newTestServer(t, Config{})
	c := s.dial(t)
	start := time.Now()
	c.expectError(wire.SignalErrUnauthorized)
	c.expectClose(wire.SignalCloseUnauthorized)
	if d := time.Since(start); d < 4500*time.Millisecond || d > 8*time.Second {
		t.Fatalf("closed after %v, want about 5s", d)
	}
}

func TestCallFull(t *testing.T) {
	s := newTestServer(t, Config{})
	var first *client
	for i := range wire.SignalMaxPeers {
		c, w := s.join(t, "full", "p"+strconv.Itoa(i))
		if len(w.Peers) != i {
			t.Fatalf("peer %d sees %d peers", i, len(w.Peers))
		}
		if i == 0 {
			first = c
		}
	}
	c := s.dial(t)
	c.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "full", Name: "late"})
	c.expectError(wire.SignalErrCallFull)
	c.expectClose(wire.SignalCloseCallFull)
	for range wire.SignalMaxPeers - 1 {
		if m := first.recv(); m.Type != wire.SignalTypePeerJoined {
			t.Fatalf("got %+v", m)
		}
	}
	s.join(t, "other", "late") // other calls are not affected
	if st := s.Stats(); st.Peers != wire.SignalMaxPeers+1 || st.Calls != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDroppedPeerIsAnnounced(t *testing.T) {
	s := newTestServer(t, Config{Transport: transport.Config{PingInterval: 100 * time.Millisecond, PongWait: 400 * time.Millisecond}})
	a, _ := s.join(t, "c", "a")
	b, wb := s.join(t, "c", "b")
	c, wc := s.join(t, "c", "c")
	a.recv()
	a.recv()
	b.recv()

	// b's TCP connection closes without a leave.
	_ = b.ws.NetConn().Close()
	for _, x := range []*client{a, c} {
		if m := x.recv(); m.Type != wire.SignalTypePeerLeft || m.ID != wb.ID {
			t.Fatalf("got %+v, want peer-left of b", m)
		}
	}
	// c stops answering pings (it no longer reads): timed out.
	start := time.Now()
	if m := a.recv(); m.Type != wire.SignalTypePeerLeft || m.ID != wc.ID {
		t.Fatalf("got %+v, want peer-left of c", m)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout noticed after %v", d)
	}
}

func TestICEServersAndTURNCredentials(t *testing.T) {
	const secret = "s3cret"
	s := newTestServer(t, Config{
		STUN:       []string{"stun:stun.example.org:3478"},
		TURN:       []string{"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"},
		TURNSecret: secret,
		TURNTTL:    time.Hour,
	})
	checkTURN := func(t *testing.T, servers []wire.SignalICEServer, id string) {
		t.Helper()
		if len(servers) != 2 || len(servers[0].URLs) != 1 || servers[0].Username != "" || len(servers[1].URLs) != 2 {
			t.Fatalf("ice servers %+v", servers)
		}
		turn := servers[1]
		expiry, who, ok := strings.Cut(turn.Username, ":")
		if !ok || (id != "" && who != id) || who == "" {
			t.Fatalf("username %q, want <expiry>:%s", turn.Username, id)
		}
		exp, err := strconv.ParseInt(expiry, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(time.Unix(exp, 0)); d < 59*time.Minute || d > 61*time.Minute {
			t.Fatalf("credentials expire in %v, want 1h", d)
		}
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(turn.Username))
		if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); turn.Credential != want {
			t.Fatalf("credential %q, want %q", turn.Credential, want)
		}
	}

	_, w := s.join(t, "c", "a")
	checkTURN(t, w.ICEServers, w.ID)

	resp, err := http.Get(s.ts.URL + "/api/ice")
	if err != nil {
		t.Fatal(err)
	}
	var body wire.SignalICEResponse
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || body.TTL != 3600 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /api/ice: %d %+v %v", resp.StatusCode, body, err)
	}
	checkTURN(t, body.ICEServers, "")

	resp, err = http.Post(s.ts.URL+"/api/ice", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /api/ice: %d", resp.StatusCode)
	}
}

func TestICEEmpty(t *testing.T) {
	s := newTestServer(t, Config{})
	resp, err := http.Get(s.ts.URL + "/api/ice")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["iceServers"]) != "[]" || string(raw["ttl"]) != "86400" {
		t.Fatalf("body %s %s", raw["iceServers"], raw["ttl"])
	}
}

func TestAuthenticate(t *testing.T) {
	s := newTestServer(t, Config{Authenticate: func(r *http.Request, token string) (string, time.Time, error) {
		if token == "" {
			token = r.URL.Query().Get("token")
		}
		switch token {
		case "good":
			return "user-1", time.Time{}, nil
		case "brief":
			return "user-2", time.Now().Add(300 * time.Millisecond), nil
		}
		return "", time.Time{}, ErrUnauthorized
	}, TURN: []string{"turn:h"}, TURNSecret: "x"})

	// A peer whose token expires is closed with 4001.
	brief := s.dial(t)
	brief.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "c", Name: "b", Token: "brief"})
	if m := brief.recv(); m.Type != wire.SignalTypeWelcome {
		t.Fatalf("got %+v", m)
	}
	brief.expectError(wire.SignalErrUnauthorized)
	brief.expectClose(wire.SignalCloseUnauthorized)

	c := s.dial(t)
	c.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "c", Name: "a", Token: "bad"})
	c.expectError(wire.SignalErrUnauthorized)
	c.expectClose(wire.SignalCloseUnauthorized)

	c = s.dial(t)
	c.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "c", Name: "a", Token: "good"})
	if m := c.recv(); m.Type != wire.SignalTypeWelcome {
		t.Fatalf("got %+v", m)
	}

	for _, tc := range []struct {
		query string
		code  int
	}{{"", 401}, {"?token=good", 200}} {
		resp, err := http.Get(s.ts.URL + "/api/ice" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error      struct{ Code string } `json:"error"`
			ICEServers []wire.SignalICEServer
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Fatalf("GET /api/ice%s: %d", tc.query, resp.StatusCode)
		}
		if tc.code == 401 && body.Error.Code != "unauthorized" {
			t.Fatalf("error body %+v", body)
		}
		if tc.code == 200 && !strings.HasSuffix(body.ICEServers[0].Username, ":user-1") {
			t.Fatalf("TURN username %q, want the user id", body.ICEServers[0].Username)
		}
	}
}

func TestShutdown(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := s.join(t, "c", "a")
	b := s.dial(t) // not joined yet
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a.expectClose(wire.SignalCloseGoingAway)
	b.expectClose(wire.SignalCloseGoingAway)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	_, resp, err := websocket.DefaultDialer.Dial(s.wsURL(), nil)
	if !errors.Is(err, websocket.ErrBadHandshake) || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Shutdown: %v", err)
	}
	resp.Body.Close()
	if st := s.Stats(); st.Conns != 0 || st.Peers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
