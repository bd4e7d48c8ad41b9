package server

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/lobby"
	"github.com/tickwire/tickwire/wire"
)

// startFlags runs a test server configured by serve's flags.
func startFlags(t *testing.T, args ...string) *testServer {
	t.Helper()
	// Recordings go to a directory of the test's, not ./data (args may
	// say otherwise: the last of a flag wins).
	o, err := parseServe(append([]string{"-data-dir", t.TempDir()}, args...), BuiltinModes(), nil)
	if err != nil {
		t.Fatalf("flags %v: %v", args, err)
	}
	o.cfg.Logger = quietLogger()
	// As in start: a loaded test machine runs ticks late without the
	// server being past its capacity (5,001 streams refused with 503).
	o.cfg.NoOverload = true
	return start(t, o.cfg)
}

// limitFlags are serve's flags that set a limit: 0 lifts it.
var limitFlags = []string{
	"max-conns", "max-conns-per-ip", "max-rooms", "max-spectators", "max-players",
	"chat-rate", "chat-burst", "msg-rate", "signal-rate", "signal-burst",
	"room-rate", "room-burst", "read-limit", "spectate-hz", "feed-history-bytes", "feed-budget-bytes", "rtc-max-frame",
	"replay-max-bytes",
}

func TestLimitFlagsSayWhatZeroMeans(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseServe([]string{"-h"}, BuiltinModes(), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	usage := out.String()
	for _, name := range limitFlags {
		// A flag's entry: its line and the indented help lines after it.
		m := regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(name) + `\b.*\n(?:    .*\n)*`).FindString(usage)
		if m == "" {
			t.Errorf("-%s is not in the usage", name)
			continue
		}
		if !strings.Contains(m, "0: no limit") && !strings.Contains(m, "0: every tick") {
			t.Errorf("-%s does not say what 0 means:\n%s", name, m)
		}
	}
	for _, args := range [][]string{{"-max-conns", "-1"}, {"-chat-rate", "-2"}, {"-max-players", "65"}, {"-hz", "0"}, {"-trusted-proxies", "10.0.0.0/33"}, {"-replay-replicas", "0"}, {"-replay-replicas", "6"}, {"-gc-percent", "0"}, {"-gc-percent", "200", "-gc-percent-max", "100"}, {"-gc-cpu", "-1"}, {"-gc-cpu", "100"}, {"-overload-cpu", "-5"}, {"-overload-cpu", "101"}} {
		if _, err := parseServe(args, BuiltinModes(), &out); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestLimitFlagsAtZeroLiftTheLimit(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		ts := startFlags(t)
		if total, perIP := ts.limits.Caps(); total != 10000 || perIP != 256 {
			t.Fatalf("default caps %d, %d", total, perIP)
		}
	})

	t.Run("max-conns", func(t *testing.T) {
		// 10,001 connections need more descriptors than a test may hold:
		// the cap in force is read instead.
		ts := startFlags(t, "-max-conns", "0")
		if total, _ := ts.limits.Caps(); total != 0 {
			t.Fatalf("-max-conns 0: a cap of %d", total)
		}
	})

	t.Run("max-conns-per-ip", func(t *testing.T) {
		ts := startFlags(t, "-max-conns-per-ip", "0", "-trusted-proxies", "127.0.0.0/8")
		if _, perIP := ts.limits.Caps(); perIP != 0 {
			t.Fatalf("-max-conns-per-ip 0: a cap of %d", perIP)
		}
		room := createRoom(t, ts, `{}`)
		openStreams(t, ts, room, 300, http.Header{"X-Forwarded-For": {"203.0.113.50"}}) // over 256
	})

	t.Run("max-spectators", func(t *testing.T) {
		if testing.Short() {
			t.Skip("5001 streams")
		}
		ts := startFlags(t, "-max-spectators", "0")
		room := createRoom(t, ts, `{}`)
		openStreams(t, ts, room, 5001, nil) // over 5000
	})

	t.Run("feed-bytes", func(t *testing.T) {
		// Sizes in bytes: what no feed reaches stands for no limit.
		ts := startFlags(t, "-feed-history-bytes", "0", "-feed-budget-bytes", "0")
		if ts.cfg.FeedHistoryBytes < 1<<50 || ts.feedBudget.Limit() < 1<<50 {
			t.Fatalf("feed caps %d per room, %d in all", ts.cfg.FeedHistoryBytes, ts.feedBudget.Limit())
		}
		def := startFlags(t)
		if def.cfg.FeedHistoryBytes != 1<<20 || def.feedBudget.Limit() != 64<<20 {
			t.Fatalf("default feed caps %d, %d", def.cfg.FeedHistoryBytes, def.feedBudget.Limit())
		}
	})

	t.Run("max-rooms", func(t *testing.T) {
		ts := startFlags(t, "-max-rooms", "0", "-hz", "1")
		for i := 0; i < 1001; i++ { // over 1000
			if _, err := ts.Lobby().CreateRoom(lobby.RoomOptions{Private: true}); err != nil {
				t.Fatalf("room %d: %v", i+1, err)
			}
		}
	})

	t.Run("rtc-max-frame", func(t *testing.T) {
		// internal/rtc takes a negative limit as none.
		if ts := startFlags(t, "-rtc-max-frame", "0"); ts.cfg.rtcMaxFrame() >= 0 {
			t.Fatalf("-rtc-max-frame 0: a limit of %d", ts.cfg.rtcMaxFrame())
		}
		if ts := startFlags(t, "-rtc-max-frame", "1100"); ts.cfg.rtcMaxFrame() != 1100 {
			t.Fatalf("-rtc-max-frame 1100: a limit of %d", ts.cfg.rtcMaxFrame())
		}
	})

	t.Run("max-players", func(t *testing.T) {
		ts := startFlags(t, "-max-players", "0")
		p := ts.join(t, "ana", "auto")
		var l struct{ Rooms []lobby.Listing }
		getJSON(t, ts.http.URL+"/api/rooms", &l)
		if len(l.Rooms) != 1 || l.Rooms[0].ID != p.Welcome().Room || l.Rooms[0].MaxPlayers != lobby.MaxRoomSeats {
			t.Fatalf("-max-players 0: %+v, want a room of %d seats", l.Rooms, lobby.MaxRoomSeats)
		}
	})

	for _, args := range [][]string{{"-chat-rate", "0"}, {"-chat-burst", "0"}} {
		t.Run(args[0][1:], func(t *testing.T) {
			ts := startFlags(t, args...)
			p := ts.join(t, "ana", "auto")
			const lines = 60 // three times the default burst
			for i := 0; i < lines; i++ {
				if err := p.Chat(fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
			}
			_ = p.Ping() // answered after any error about the lines
			for got := 0; got < lines; {
				switch m := next[wire.ServerMessage](t, p).(type) {
				case *wire.Error:
					t.Fatalf("%v: %+v after %d lines", args, m, got)
				case *wire.ChatLine:
					got++
				}
			}
		})
	}

	t.Run("msg-rate", func(t *testing.T) {
		// At 5 Hz the default allows 10 messages/s and closes at 180 at once.
		ts := startFlags(t, "-msg-rate", "0", "-hz", "5")
		p := ts.join(t, "ana", "auto")
		const pings = 600
		go func() {
			for i := 0; i < pings && p.Ping() == nil; i++ {
			}
		}()
		for got := 0; got < pings; {
			switch m := next[wire.ServerMessage](t, p).(type) {
			case *wire.Error:
				t.Fatalf("-msg-rate 0: %+v after %d pongs", m, got)
			case *wire.Pong:
				got++
			}
		}
	})

	t.Run("read-limit", func(t *testing.T) {
		ts := startFlags(t, "-read-limit", "0")
		p := ts.join(t, "ana", "auto")
		frame := wire.MustEncode(&wire.Chat{Text: strings.Repeat("x", 8000)}) // twice the default limit
		if err := p.SendRaw(frame); err != nil {
			t.Fatal(err)
		}
		// Not closed with 1009: the line is refused as too long, and the
		// session goes on.
		if e := next[*wire.Error](t, p); e.Code != wire.CodeBadMessage {
			t.Fatalf("an 8000-byte frame: %+v", e)
		}
		_ = p.Ping()
		next[*wire.Pong](t, p)
	})

	for _, args := range [][]string{{"-signal-rate", "0"}, {"-signal-burst", "0"}} {
		t.Run(args[0][1:], func(t *testing.T) {
			ts := startFlags(t, args...)
			relayFlood(t, ts, 500) // over the default burst of 200
		})
	}

	for _, args := range [][]string{{"-room-rate", "0"}, {"-room-burst", "0"}} {
		t.Run(args[0][1:], func(t *testing.T) {
			ts := startFlags(t, append(args, "-trusted-proxies", "127.0.0.0/8")...)
			for i := 0; i < 12; i++ {
				if status, code, _ := postRoom(t, ts.http.URL, "203.0.113.60"); status != http.StatusCreated {
					t.Fatalf("%v: room %d: %d %s", args, i+1, status, code)
				}
			}
		})
	}

	t.Run("spectate-hz", func(t *testing.T) {
		ts := startFlags(t, "-spectate-hz", "0", "-hz", "20")
		p := ts.join(t, "ana", "auto")
		keepMoving(t, p)
		v := ts.watch(t, spectator.Options{Room: p.Welcome().Room})
		last, step := uint64(0), uint64(0)
		for i := 0; i < 20 && step != 1; i++ {
			var s struct{ N uint64 }
			if err := json.Unmarshal(nextEvent(t, v, wire.EventSnap).Data, &s); err != nil {
				t.Fatal(err)
			}
			if last != 0 && (step == 0 || s.N-last < step) {
				step = s.N - last
			}
			last = s.N
		}
		if step != 1 {
			t.Fatalf("-spectate-hz 0: snapshots every %d ticks at best, want every tick", step)
		}
	})
}

// openStreams opens n SSE streams on room, each with header, and fails
// unless every one is let in; they are closed when the test ends.
func openStreams(t *testing.T, ts *testServer, room string, n int, header http.Header) {
	t.Helper()
	addr := strings.TrimPrefix(ts.http.URL, "http://")
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := map[int]int{}
	var conns []net.Conn
	var firstErr error
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				status, c, err := openSSE(addr, room, header)
				mu.Lock()
				switch {
				case err != nil:
					firstErr = cmp.Or(firstErr, err)
				case c != nil:
					conns = append(conns, c)
				default:
					refused[status]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if firstErr != nil || len(refused) > 0 {
		t.Fatalf("of %d streams, %d let in, refused by status: %v, error: %v", n, len(conns), refused, firstErr)
	}
}

// relayFlood has one signaling peer send n candidates at once to another,
// and fails unless every one is relayed without a rate-limited error.
func relayFlood(t *testing.T, ts *testServer, n int) {
	t.Helper()
	url := "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/ws/signal"
	dial := func(name string) (*websocket.Conn, wire.SignalMessage) {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.WriteJSON(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "flood", Name: name})
		return c, readSignal(t, c, wire.SignalTypeWelcome)
	}
	a, wa := dial("a")
	b, _ := dial("b")
	readSignal(t, a, wire.SignalTypePeerJoined)
	for i := 0; i < n; i++ {
		_ = b.WriteJSON(map[string]any{"type": wire.SignalTypeICECandidate, "to": wa.ID, "candidate": nil})
	}
	_ = b.WriteJSON(wire.SignalMessage{Type: wire.SignalTypeOffer, To: "nobody", SDP: "v=0"})
	// b's errors come in order: a rate-limited one before the unknown-peer.
	if e := readSignal(t, b, wire.SignalTypeError); e.Code != "unknown-peer" {
		t.Fatalf("after %d candidates at once: %+v", n, e)
	}
	for got := 0; got < n; got++ {
		readSignal(t, a, wire.SignalTypeICECandidate)
	}
}

// readSignal returns c's next message of type typ, skipping others.
func readSignal(t *testing.T, c *websocket.Conn, typ string) wire.SignalMessage {
	t.Helper()
	for {
		var m wire.SignalMessage
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
	}
}
