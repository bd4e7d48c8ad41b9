package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/wire"
)

// TestSoak mixes healthy players and viewers with clients that misbehave
// (garbage frames, floods, never reading, vanishing mid-frame, abandoned
// polls, bad signaling) for about 40 s (TICKWIRE_SOAK sets another
// duration), and checks that the server answers throughout, that healthy
// players keep their snapshot rate, that no chat line is lost for a healthy
// player or viewer, and that goroutines and memory come back to their
// baseline once everyone has gone.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	duration := 40 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TICKWIRE_SOAK")); err == nil {
		duration = d
	}
	baseGoroutines := runtime.NumGoroutine()
	baseMem := inUse()
	const hz = 20
	ts := start(t, Config{Hz: hz, Grace: time.Second, RoomIdle: time.Second, JoinWait: time.Second,
		PingEvery: 500 * time.Millisecond})
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()

	// Healthy players: two rooms of four, moving and chatting once a second.
	type healthy struct {
		c     *player.Client
		room  string
		snaps int
		chat  []string
	}
	var players []*healthy
	for i := 0; i < 8; i++ {
		room := "auto"
		switch {
		case i == 4:
			room = createRoom(t, ts, `{}`)
		case i%4 != 0:
			room = players[i-i%4].room
		}
		c := ts.join(t, fmt.Sprintf("p%d", i), room)
		players = append(players, &healthy{c: c, room: c.Welcome().Room})
	}
	rooms := []string{players[0].room, players[4].room}
	if rooms[0] == rooms[1] {
		t.Fatal("the healthy players share one room")
	}
	var wg sync.WaitGroup
	began := time.Now()
	sent := make([][]string, len(players))
	for i, h := range players {
		wg.Add(2)
		go func() { // read everything
			defer wg.Done()
			for m := range h.c.Messages() {
				switch m := m.(type) {
				case *wire.Snap:
					if ctx.Err() == nil {
						h.snaps++
					}
				case *wire.ChatLine:
					h.chat = append(h.chat, m.Text)
				}
			}
		}()
		go func() { // move and chat
			defer wg.Done()
			tick := time.NewTicker(time.Second / hz)
			defer tick.Stop()
			for k := 0; ctx.Err() == nil; k++ {
				<-tick.C
				a := float64(k) / 10
				_, _ = h.c.Input(cosSin(a))
				if k%hz == i {
					line := fmt.Sprintf("p%d-%d", i, k/hz)
					if h.c.Chat(line) == nil {
						sent[i] = append(sent[i], line)
					}
				}
			}
		}()
	}

	// Healthy viewers: SSE and long-poll on each room.
	type watcher struct {
		v    *spectator.Viewer
		room string
		chat []string
	}
	var watchers []*watcher
	for _, room := range rooms {
		for _, tr := range []string{spectator.SSE, spectator.Poll} {
			w := &watcher{v: ts.watch(t, spectator.Options{Room: room, Transport: tr, PollTimeout: 5 * time.Second}), room: room}
			watchers = append(watchers, w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range w.v.Events() {
					if e.Type == wire.EventChat {
						w.chat = append(w.chat, chatLineText(e))
					}
				}
			}()
		}
	}

	// The server answers throughout.
	var healthFails atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 3 * time.Second}
		for ctx.Err() == nil {
			resp, err := client.Get(ts.http.URL + "/healthz")
			if err != nil || resp.StatusCode != 200 {
				healthFails.Add(1)
			}
			if resp != nil {
				resp.Body.Close()
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()

	// Misbehaving clients, one after another, several at a time.
	var bad sync.WaitGroup
	misbehave := []func(){
		func() { // garbage frames
			c, err := ts.dial("garbage", rooms[0], "")
			if err == nil {
				_ = c.SendRaw([]byte{0xc1, 0xff, 0x00})
				<-c.Done()
			}
		},
		func() { // a flood of pings
			c, err := ts.dial("flood", rooms[1], "")
			if err == nil {
				for c.Ping() == nil {
				}
				c.Close()
			}
		},
		func() { // joins and never reads
			ws, _, err := websocket.DefaultDialer.Dial(ts.ws, nil)
			if err == nil {
				_ = ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Join{Name: "deaf", Room: rooms[0]}))
				time.Sleep(3 * time.Second)
				ws.Close()
			}
		},
		func() { // vanishes in the middle of a frame
			ws, _, err := websocket.DefaultDialer.Dial(ts.ws, nil)
			if err == nil {
				raw := ws.UnderlyingConn()
				_, _ = raw.Write([]byte{0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4, 5, 6}) // says 256 bytes, sends 6
				raw.Close()
			}
		},
		func() { // an SSE viewer that never reads
			addr := strings.TrimPrefix(ts.http.URL, "http://")
			c, err := net.Dial("tcp", addr)
			if err == nil {
				fmt.Fprintf(c, "GET /rooms/%s/events HTTP/1.1\r\nHost: %s\r\n\r\n", rooms[1], addr)
				time.Sleep(3 * time.Second)
				c.Close()
			}
		},
		func() { // a long-poll abandoned while parked
			cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(cctx, "GET", ts.http.URL+"/rooms/"+rooms[0]+"/poll?after=1&timeout=30", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		},
		func() { // signaling: garbage, an unknown peer, a relay flood, then gone
			sig := "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/ws/signal"
			a, _, err1 := websocket.DefaultDialer.Dial(sig, nil)
			b, _, err2 := websocket.DefaultDialer.Dial(sig, nil)
			if err1 != nil || err2 != nil {
				return
			}
			defer a.Close()
			defer b.Close()
			call := fmt.Sprintf("soak%d", rand.IntN(3))
			_ = a.WriteJSON(map[string]string{"type": "join", "call": call, "name": "a"})
			_ = b.WriteJSON(map[string]string{"type": "join", "call": call, "name": "b"})
			var w wire.SignalMessage
			_ = b.SetReadDeadline(time.Now().Add(3 * time.Second))
			if b.ReadJSON(&w) != nil {
				return
			}
			_ = a.WriteJSON(map[string]string{"type": "offer", "to": "nobody", "sdp": "x"})
			for i := 0; i < 300; i++ {
				_ = b.WriteJSON(map[string]any{"type": "ice-candidate", "to": firstPeer(w), "candidate": nil})
			}
			_ = a.WriteMessage(websocket.TextMessage, []byte("{not json"))
		},
	}
	for i := 0; ctx.Err() == nil; i++ {
		bad.Add(1)
		go func() {
			defer bad.Done()
			misbehave[i%len(misbehave)]()
		}()
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(began)
	bad.Wait()
	time.Sleep(time.Second) // the last chat lines arrive
	for _, h := range players {
		_ = h.c.Leave()
	}
	for _, w := range watchers {
		w.v.Close()
	}
	wg.Wait()

	if n := healthFails.Load(); n > 0 {
		t.Errorf("/healthz failed %d times", n)
	}
	for i, h := range players {
		if rate := float64(h.snaps) / elapsed.Seconds(); rate < 0.85*hz {
			t.Errorf("healthy player %d got %.1f snapshots/s, want about %d", i, rate, hz)
		}
		for j := range players {
			if players[j].room == h.room && !inOrder(h.chat, sent[j]) {
				t.Errorf("player %d lost chat of player %d: got %d lines, sent %d", i, j, len(filter(h.chat, fmt.Sprintf("p%d-", j))), len(sent[j]))
			}
		}
	}
	for _, w := range watchers {
		for j := range players {
			if players[j].room == w.room && !inOrder(w.chat, sent[j]) {
				t.Errorf("viewer lost chat of player %d: got %d, sent %d", j, len(filter(w.chat, fmt.Sprintf("p%d-", j))), len(sent[j]))
			}
		}
	}

	// Everyone has gone: rooms end, goroutines and memory come back.
	for deadline := time.Now().Add(15 * time.Second); ts.Lobby().Stats().Rooms > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rooms still open: %+v", ts.Lobby().Stats())
		}
	}
	http.DefaultClient.CloseIdleConnections()
	checkGoroutines(t, baseGoroutines+10) // the test server's own
	if grown := int64(inUse()) - int64(baseMem); grown > 32<<20 {
		t.Errorf("memory grew by %d MiB", grown>>20)
	}
}

func cosSin(a float64) (float64, float64) {
	s, c := math.Sincos(a)
	return c, s
}

// chatLineText is the text of a chat event, or "" if it does not decode.
func chatLineText(e spectator.Event) string {
	var c wire.ChatLine
	_ = json.Unmarshal(e.Data, &c)
	return c.Text
}

func firstPeer(w wire.SignalMessage) string {
	if len(w.Peers) > 0 {
		return w.Peers[0].ID
	}
	return "nobody"
}

// inOrder reports whether want appears in got, in order, with nothing of
// it missing.
func inOrder(got, want []string) bool {
	prefix := ""
	if len(want) > 0 {
		prefix = want[0][:strings.Index(want[0], "-")+1]
	}
	mine := filter(got, prefix)
	if len(mine) != len(want) {
		return false
	}
	for i := range want {
		if mine[i] != want[i] {
			return false
		}
	}
	return true
}

func filter(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
