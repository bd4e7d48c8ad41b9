package peer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/tickwire/tickwire/signaling"
	"github.com/tickwire/tickwire/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer runs a signaling server on loopback and returns its URL. It
// is shut down after the test's peers are closed.
func startServer(tb testing.TB) string {
	tb.Helper()
	s := signaling.New(signaling.Config{})
	mux := http.NewServeMux()
	mux.Handle("GET /ws/signal", s)
	ts := httptest.NewServer(mux)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		ts.Close()
	})
	return "ws" + ts.URL[len("http"):]
}

// join joins a peer and closes it when the test ends.
func join(tb testing.TB, cfg Config) *Peer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Join(ctx, cfg)
	if err != nil {
		tb.Fatalf("join %s: %v", cfg.Name, err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

func waitOpen(t *testing.T, n int, peers ...*Peer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range peers {
		if err := p.WaitOpen(ctx, n); err != nil {
			t.Fatalf("peer %s: %v; stats %+v", p.ID(), err, p.Stats())
		}
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkEcho sends one message from every peer and waits for each of the
// others' echoes.
func checkEcho(t *testing.T, peers ...*Peer) {
	t.Helper()
	for _, p := range peers {
		before := p.Stats().Echoes
		if sent := p.Send(); sent != len(peers)-1 {
			t.Fatalf("peer %s sent on %d channels, want %d", p.ID(), sent, len(peers)-1)
		}
		eventually(t, "echoes to "+p.ID(), func() bool {
			return p.Stats().Echoes == before+uint64(len(peers)-1)
		})
	}
}

func TestPairConnects(t *testing.T) {
	srv := startServer(t)
	a := join(t, Config{Server: srv, Call: "pair", Name: "ana", Logf: t.Logf})
	b := join(t, Config{Server: srv, Call: "pair", Name: "bo", Logf: t.Logf})
	waitOpen(t, 1, a, b)

	// A DataChannel message goes both ways.
	checkEcho(t, a, b)
	sa, sb := a.Stats(), b.Stats()
	if sb.MessagesIn != 2 || sb.MessagesOut != 2 || sb.Echoes != 1 {
		t.Fatalf("b counts %+v, want 2 in (a's message, its echo), 2 out", sb)
	}
	if len(sa.Remotes) != 1 || sa.Remotes[0].ID != b.ID() || sa.Remotes[0].Name != "bo" || sa.Remotes[0].State != "connected" {
		t.Fatalf("a's remotes %+v", sa.Remotes)
	}
	for _, st := range []Stats{sa, sb} {
		r := st.Remotes[0]
		if r.Connect <= 0 || r.Open < r.Connect || r.Open > 10*time.Second {
			t.Fatalf("timings of %s: connect %v open %v", st.ID, r.Connect, r.Open)
		}
	}

	// Audio RTP from each arrives at the other.
	eventually(t, "audio both ways", func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.RTPIn >= 10 && sb.RTPIn >= 10 && sa.RTPOut >= 10 && sb.RTPOut >= 10
	})
	if sa, sb := a.Stats(), b.Stats(); sb.RTPIn > sa.RTPOut+5 {
		t.Fatalf("b received %d RTP packets, a sent only %d", sb.RTPIn, sa.RTPOut)
	}
}

func TestMeshOfFour(t *testing.T) {
	srv := startServer(t)
	var peers []*Peer
	for i := range 4 {
		peers = append(peers, join(t, Config{Server: srv, Call: "mesh", Name: fmt.Sprint("p", i), Logf: t.Logf}))
	}
	waitOpen(t, 3, peers...)
	checkEcho(t, peers...)
	for _, p := range peers {
		st := p.Stats()
		if len(st.Remotes) != 3 {
			t.Fatalf("%s knows %d peers", p.ID(), len(st.Remotes))
		}
		for _, r := range st.Remotes {
			if r.State != "connected" || r.Echoes != 1 {
				t.Fatalf("%s -> %s: %+v", p.ID(), r.ID, r)
			}
		}
	}
	eventually(t, "audio from every peer", func() bool {
		for _, p := range peers {
			for _, r := range p.Stats().Remotes {
				if r.RTPIn == 0 {
					return false
				}
			}
		}
		return true
	})
}

func TestGlare(t *testing.T) {
	srv := startServer(t)
	// Hold each offer until both are made, so they cross on the way.
	var made sync.WaitGroup
	made.Add(2)
	both := make(chan struct{})
	go func() { made.Wait(); close(both) }()
	hold := func(string) {
		made.Done()
		select {
		case <-both:
		case <-time.After(10 * time.Second):
		}
	}
	a := join(t, Config{Server: srv, Call: "glare", Name: "a", OfferOnJoined: true, beforeOffer: hold, Logf: t.Logf})
	b := join(t, Config{Server: srv, Call: "glare", Name: "b", OfferOnJoined: true, beforeOffer: hold, Logf: t.Logf})
	waitOpen(t, 1, a, b)
	checkEcho(t, a, b)

	polite, impolite := a.Stats(), b.Stats()
	if b.ID() < a.ID() {
		polite, impolite = impolite, polite
	}
	if polite.Glares != 1 || polite.Restarts != 1 || impolite.Glares != 1 || impolite.Restarts != 0 {
		t.Fatalf("polite %+v\nimpolite %+v", polite, impolite)
	}
	eventually(t, "audio after glare", func() bool { return a.Stats().RTPIn > 0 && b.Stats().RTPIn > 0 })
}

func TestPeerLeaves(t *testing.T) {
	srv := startServer(t)
	a := join(t, Config{Server: srv, Call: "leave", Name: "a", NoAudio: true})
	b := join(t, Config{Server: srv, Call: "leave", Name: "b", NoAudio: true})
	waitOpen(t, 1, a, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a sees b leave", func() bool {
		r := a.Stats().Remotes
		return len(r) == 1 && r[0].State == "closed"
	})
	if a.Send() != 0 {
		t.Fatal("a still has an open channel")
	}
	// A newcomer connects to the one still there.
	c := join(t, Config{Server: srv, Call: "leave", Name: "c", NoAudio: true})
	waitOpen(t, 1, a, c)
	checkEcho(t, a, c)
	if err := b.WaitOpen(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitOpen after Close: %v", err)
	}
}

func TestJoinRefused(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Join(ctx, Config{Server: srv, Call: "bad call", Name: "a"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("join with a bad call id: %v", err)
	}
	if _, err := Join(ctx, Config{Server: "ftp://x", Call: "c", Name: "a"}); err == nil {
		t.Fatal("join with a bad server address succeeded")
	}
}

func TestPeerDrops(t *testing.T) {
	srv := startServer(t)
	a := join(t, Config{Server: srv, Call: "drop", Name: "a", NoAudio: true})
	b := join(t, Config{Server: srv, Call: "drop", Name: "b", NoAudio: true})
	waitOpen(t, 1, a, b)
	_ = b.ws.NetConn().Close() // TCP gone, no leave
	eventually(t, "a sees b dropped", func() bool {
		r := a.Stats().Remotes
		return len(r) == 1 && r[0].State == "closed"
	})
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("b's Done not closed after its signaling connection failed")
	}
}

// TestBadNeighbour has a raw client in the call send garbage, forged and
// oversized messages and a flood; the Pion peers still connect.
func TestBadNeighbour(t *testing.T) {
	srv := startServer(t)
	ws, _, err := websocket.DefaultDialer.Dial(srv+"/ws/signal", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	send := func(s string) {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"type":"join","call":"bad","name":"mallory"}`)

	a := join(t, Config{Server: srv, Call: "bad", Name: "a", Logf: t.Logf})
	b := join(t, Config{Server: srv, Call: "bad", Name: "b", Logf: t.Logf})
	for _, id := range []string{a.ID(), b.ID()} {
		send(`{"type":"offer","to":"` + id + `","sdp":"garbage"}`)
		send(`{"type":"answer","to":"` + id + `","sdp":"garbage"}`)
		send(`{"type":"ice-candidate","to":"` + id + `","candidate":{"candidate":"candidate:junk"}}`)
		send(`{"type":"offer","to":"` + id + `","sdp":"` + strings.Repeat("v", wire.SignalMaxSDP+1) + `"}`)
		send(`{"type":"ice-candidate","to":"` + id + `","from":"` + a.ID() + `","candidate":null}`)
	}
	for range 300 {
		send(`{"type":"ice-candidate","to":"` + a.ID() + `","candidate":null}`)
	}
	send(`not json`)

	waitOpen(t, 1, a, b)
	checkEcho(t, a, b)
	eventually(t, "audio", func() bool { return a.Stats().RTPIn > 0 && b.Stats().RTPIn > 0 })
}
