package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/transport"
	"github.com/tickwire/tickwire/wire"
)

// TestSoak mixes healthy players and viewers with clients that misbehave
// (garbage frames, floods, never reading, vanishing mid-frame, an oversized
// frame sent while the socket is full, abandoned polls, viewers over TLS
// that stop reading, bad signaling) for
// about 40 s (TICKWIRE_SOAK sets another duration), and checks that the
// server answers throughout, that healthy players keep their snapshot rate,
// that no chat line is lost for a healthy player or viewer, that a player
// whose socket is full when it sends an oversized frame reads whole frames
// and then close 1009, and that goroutines and memory come back to their
// baseline once everyone has gone.
//
// Admission attackers as well: clients that send their headers slowly (cut
// at HeaderTimeout), room-creation floods from single clients behind the
// trusted proxy (never more rooms than the room rate allows, 429 with
// Retry-After, `auto` refused with 4029), and typing floods (healthy
// players see at most one `typing` per second of each). Every count the
// server keeps stays at or above zero throughout, and every connection
// slot is released at the end.
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
	// Viewers may come over TLS too (tlsServer.addr), as with -tls-cert.
	tlsts := startTLS(t, Config{Hz: hz, Grace: time.Second, RoomIdle: time.Second, JoinWait: time.Second,
		// A peer whose pong does not come within three pings is dropped:
		// every 500 ms was too tight for a loaded machine (a stress run
		// saw two healthy players stop together, halfway).
		PingEvery:     time.Second,
		HeaderTimeout: time.Second, TrustedProxies: []string{"127.0.0.0/8", "::1"}, NoOverload: true}, false)
	ts := tlsts.testServer
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()

	// Healthy players: two rooms of four, moving and chatting once a second.
	type healthy struct {
		c     *player.Client
		room  string
		snaps int
		chat  chatLog
		// typing seen, by sender id
		typing map[uint32]int
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
		players = append(players, &healthy{c: c, room: c.Welcome().Room, typing: map[uint32]int{}})
	}
	rooms := []string{players[0].room, players[4].room}
	if rooms[0] == rooms[1] {
		t.Fatal("the healthy players share one room")
	}
	// The ticks each healthy room runs in the window: a loaded machine
	// delays and skips ticks for every room alike, which is no loss.
	ticksRun := func() map[string]uint64 {
		ticks := make(map[string]uint64)
		for _, id := range rooms {
			r, err := ts.lobby.Room(id)
			if err != nil {
				t.Fatalf("healthy room %s: %v", id, err)
			}
			ticks[id] = r.Stats().Ticks
		}
		return ticks
	}
	var wg sync.WaitGroup
	ticksBefore := ticksRun()
	began := time.Now()
	sent := make([][]string, len(players))
	var movers sync.WaitGroup
	for i, h := range players {
		wg.Add(1)
		movers.Add(1)
		go func() { // read everything
			defer wg.Done()
			for m := range h.c.Messages() {
				switch m := m.(type) {
				case *wire.Snap:
					if ctx.Err() == nil {
						h.snaps++
					}
				case *wire.ChatLine:
					h.chat.add(m.Text)
				case *wire.TypingFrom:
					h.typing[m.ID]++
				}
			}
		}()
		go func() { // move and chat
			defer movers.Done()
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
		chat chatLog
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
						w.chat.add(chatLineText(e))
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
	var full struct { // the players that send an oversized frame once their socket is full
		busy           atomic.Bool  // one at a time: each holds a seat
		closed, gaveUp atomic.Int32 // closed with 1009; never filled their socket
		mu             sync.Mutex
		wrong          []string // anything else the player saw
	}
	// The admission attackers' findings, and a watch on the server's
	// counts.
	var adm struct {
		slowCut, roomsMade, roomsRefused, autoRefused atomic.Int32
		mu                                            sync.Mutex
		typists                                       map[string]time.Duration // room/id: how long it sent typing
		wrong                                         []string
	}
	adm.typists = map[string]time.Duration{}
	admWrong := func(format string, args ...any) {
		adm.mu.Lock()
		adm.wrong = append(adm.wrong, fmt.Sprintf(format, args...))
		adm.mu.Unlock()
	}
	wg.Add(1)
	go func() { // counts never go below zero
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			st, fs := ts.Lobby().Stats(), ts.feeds.Stats()
			if st.Rooms < 0 || st.Players < 0 || st.Spectators < 0 || fs.Streams < 0 || fs.ParkedPolls < 0 || ts.limits.Open() < 0 {
				admWrong("a negative count: %+v %+v, %d connections", st, fs, ts.limits.Open())
				return
			}
			<-tick.C
		}
	}()
	addr := strings.TrimPrefix(ts.http.URL, "http://")
	var slowTLS atomic.Int32
	var tlsViewers sync.Map // protocols the slow TLS viewers were served over
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
		func() { // stops reading until its socket is full, then sends a frame over the read limit
			if !full.busy.CompareAndSwap(false, true) {
				return
			}
			defer full.busy.Store(false)
			d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: smallSocket}).DialContext}
			ws, _, err := d.Dial(ts.ws, nil)
			if err != nil {
				return
			}
			defer ws.Close()
			_ = ws.WriteMessage(websocket.BinaryMessage, wire.MustEncode(&wire.Join{Name: "full", Room: rooms[1]}))
			if _, _, err := ws.ReadMessage(); err != nil { // welcome (an error if refused: it gives up below)
				return
			}
			// From here on it reads nothing. Unsolicited pongs keep it from
			// timing out; requests whose answers pile up fill the socket
			// sooner than snapshots alone.
			alive := make(chan struct{})
			var pongs sync.WaitGroup
			stop := sync.OnceFunc(func() { close(alive); pongs.Wait() })
			defer stop()
			pongs.Add(1)
			go func() {
				defer pongs.Done()
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-alive:
						return
					case <-tick.C:
						_ = ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
					}
				}
			}()
			bad, _ := msgpackMarshal(map[string]any{"t": "input", "dx": "x"}) // answered with an error
			for range 300 {
				_ = ws.WriteMessage(websocket.BinaryMessage, bad)
			}
			wrong := func(what string) {
				full.mu.Lock()
				full.wrong = append(full.wrong, what)
				full.mu.Unlock()
			}
			// The socket is full once a snapshot had to wait (and was
			// replaced): the server is in the middle of a frame.
			addr := ws.LocalAddr().String()
			ts.waitPlayConn(addr, 15*time.Second, func(c *transport.Conn) bool { return c == nil || c.Stats().StatesReplaced >= 3 })
			if c := ts.playConn(addr); c == nil || c.Stats().StatesReplaced < 3 {
				full.gaveUp.Add(1)
				return
			}
			_ = ws.WriteMessage(websocket.BinaryMessage, make([]byte, 5000)) // the read limit is 4096
			stop()
			// Still not reading: the server reads the frame and ends the
			// session before the player reads what it wrote.
			if !ts.waitPlayConn(addr, 10*time.Second, func(c *transport.Conn) bool { return c == nil }) {
				wrong("the session goes on after a frame over the read limit")
				return
			}
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			for { // whole frames, then the close 1009 (gorilla's reader checks the framing)
				if _, _, err := ws.ReadMessage(); err != nil {
					if player.CloseCode(err) == wire.CloseTooBig {
						full.closed.Add(1)
					} else {
						wrong(err.Error())
					}
					return
				}
			}
		},
		func() { // slow headers: a header line now and then, never the blank line
			// Timed from before the dial: the server's header timer starts
			// when it accepts, which a loaded machine may do before the
			// dial returns here.
			began := time.Now()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n", addr)
			done := make(chan struct{})
			defer close(done)
			go func() {
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						if _, err := c.Write([]byte("X-Slow: 1\r\n")); err != nil {
							return
						}
					}
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			switch took := time.Since(began); {
			case errors.As(err, &ne) && ne.Timeout():
				admWrong("slow headers still connected after %v", took)
			case took < 900*time.Millisecond:
				admWrong("slow headers cut after %v, before the header timeout", took)
			default:
				adm.slowCut.Add(1)
			}
		},
		func() { // a room-creation flood from one client behind the trusted proxy
			client := fmt.Sprintf("198.51.100.%d", 1+rand.IntN(250))
			made, began := 0, time.Now()
			for range 15 {
				req, _ := http.NewRequestWithContext(ctx, "POST", ts.http.URL+"/api/rooms", strings.NewReader(`{"private":true}`))
				req.Header.Set("X-Forwarded-For", "203.0.113.1, "+client) // the left part is the client's own say
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusCreated:
					made++
					adm.roomsMade.Add(1)
				case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "":
					adm.roomsRefused.Add(1)
				default:
					admWrong("room flood: %d", resp.StatusCode)
				}
			}
			// At most the burst (5) and 1 a second since.
			if allowed := 5 + int(time.Since(began).Seconds()) + 1; made > allowed {
				admWrong("room flood of %s: %d rooms, at most %d allowed", client, made, allowed)
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			c, err := player.Dial(cctx, player.Options{URL: ts.ws, Name: "flood", Room: "auto", Mode: "shooter",
				Header: http.Header{"X-Forwarded-For": {client}}})
			var je *player.JoinError
			switch {
			case err == nil:
				c.Close() // the bucket refilled meanwhile: the room was due
			case errors.As(err, &je) && je.Code == wire.CodeRateLimited && je.CloseCode == wire.CloseRateLimited:
				adm.autoRefused.Add(1)
			case ctx.Err() == nil:
				admWrong("room flood, auto: %v", err)
			}
		},
		func() { // a typing flood: 300 a second for 1.5 s, under the flood guard
			room := rooms[rand.IntN(len(rooms))]
			c, err := ts.dial("typist", room, "")
			if err != nil {
				return
			}
			defer c.Close()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			began := time.Now()
			var last time.Time
			for time.Since(began) < 1500*time.Millisecond {
				<-tick.C
				for range 3 {
					if c.Typing() != nil {
						return
					}
					last = time.Now()
				}
			}
			adm.mu.Lock()
			adm.typists[fmt.Sprintf("%s/%d", room, c.ID())] = last.Sub(began)
			adm.mu.Unlock()
			_ = c.Leave()
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
		func() { // a viewer over TLS that stops reading for a while, HTTP/1.1 and HTTP/2 in turn
			n := slowTLS.Add(1)
			if proto := slowTLSViewer(ctx, tlsts, rooms[n%2], n%4 < 2); proto != "" {
				tlsViewers.Store(proto, true)
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
	ticksAfter := ticksRun()
	bad.Wait()
	movers.Wait() // sent is complete
	for i, h := range players {
		if err := h.c.Err(); err != nil {
			t.Errorf("healthy player %d: the connection ended: %v", i, err)
		}
	}
	// The last chat lines arrive: every line said in a room reaches its
	// players and viewers, however late a loaded machine brings them.
	// lostFrom returns the players of room whose lines are not all in got.
	lostFrom := func(got []string, room string) (lost []int) {
		for j := range players {
			if players[j].room == room && !inOrder(got, sent[j]) {
				lost = append(lost, j)
			}
		}
		return lost
	}
	heard := func(chat *chatLog, room string) bool { return len(lostFrom(chat.lines(), room)) == 0 }
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		all := true
		for _, h := range players {
			all = all && heard(&h.chat, h.room)
		}
		for _, w := range watchers {
			all = all && heard(&w.chat, w.room)
		}
		if all {
			break
		}
	}
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
	for _, w := range adm.wrong {
		t.Errorf("admission: %s", w)
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		if _, ok := tlsViewers.Load(proto); !ok {
			t.Errorf("no slow TLS viewer was served over %s", proto)
		}
	}
	if adm.slowCut.Load() == 0 || adm.roomsRefused.Load() == 0 || len(adm.typists) == 0 {
		t.Errorf("admission attackers did not run: %d slow-header clients cut, %d rooms refused, %d typists",
			adm.slowCut.Load(), adm.roomsRefused.Load(), len(adm.typists))
	}
	for i, h := range players {
		for id, n := range h.typing {
			d, ok := adm.typists[fmt.Sprintf("%s/%d", h.room, id)]
			// One a second, give or take one for the server's view of
			// when they came.
			if allowed := int(d/time.Second) + 2; !ok || n > allowed {
				t.Errorf("healthy player %d saw %d typing from %d (typed for %v)", i, n, id, d)
			}
		}
	}
	t.Logf("admission: %d slow-header clients cut, rooms %d made and %d refused, %d auto refused, %d typists",
		adm.slowCut.Load(), adm.roomsMade.Load(), adm.roomsRefused.Load(), adm.autoRefused.Load(), len(adm.typists))
	if len(full.wrong) > 0 {
		t.Errorf("players that sent an oversized frame with a full socket saw, instead of close 1009: %q", full.wrong)
	}
	if full.closed.Load() == 0 && runtime.GOOS == "linux" {
		t.Errorf("no player filled its socket and was closed with 1009 (%d gave up)", full.gaveUp.Load())
	}
	t.Logf("oversized frames with a full socket: %d closed with 1009, %d never filled their socket", full.closed.Load(), full.gaveUp.Load())
	for i, h := range players {
		// Every tick its room ran, give or take the window's ends; and
		// the room ran at all, however busy the machine.
		ran := ticksAfter[h.room] - ticksBefore[h.room]
		t.Logf("healthy player %d: %d snapshots of the %d ticks its room ran", i, h.snaps, ran)
		// Latest wins for a player that reads slowly, as the test's own
		// readers do when the machine is busy (89 % seen beside another
		// make test).
		if float64(h.snaps) < 0.8*float64(ran) {
			t.Errorf("healthy player %d got %d snapshots of the %d ticks its room ran", i, h.snaps, ran)
		}
		if rate := float64(ran) / elapsed.Seconds(); rate < hz/2 {
			t.Errorf("healthy player %d's room ran %.1f ticks/s, want about %d", i, rate, hz)
		}
		got := h.chat.lines()
		for _, j := range lostFrom(got, h.room) {
			t.Errorf("player %d lost chat of player %d: got %d lines, sent %d", i, j, len(filter(got, fmt.Sprintf("p%d-", j))), len(sent[j]))
		}
	}
	for _, w := range watchers {
		got := w.chat.lines()
		for _, j := range lostFrom(got, w.room) {
			t.Errorf("viewer lost chat of player %d: got %d, sent %d", j, len(filter(got, fmt.Sprintf("p%d-", j))), len(sent[j]))
		}
	}

	// Everyone has gone: rooms end, goroutines and memory come back.
	for deadline := time.Now().Add(15 * time.Second); ts.Lobby().Stats().Rooms > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rooms still open: %+v", ts.Lobby().Stats())
		}
	}
	for deadline := time.Now().Add(15 * time.Second); ts.limits.Open() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connection slots still held", ts.limits.Open())
		}
	}
	http.DefaultClient.CloseIdleConnections()
	checkGoroutines(t, baseGoroutines+10) // the test server's own
	if grown := int64(inUse()) - int64(baseMem); grown > 32<<20 {
		t.Errorf("memory grew by %d MiB", grown>>20)
	}
}

// slowTLSViewer watches room over TLS (HTTP/2 when h2, else HTTP/1.1),
// reads the start of the stream, then reads nothing for 3 s while the room
// goes on, and goes. It returns the protocol of a stream it was served,
// else "".
func slowTLSViewer(ctx context.Context, ts *tlsServer, room string, h2 bool) string {
	var protos http.Protocols
	protos.SetHTTP1(!h2)
	protos.SetHTTP2(h2)
	// The viewer's connections are closed when it goes, idle or not, also
	// one whose dial ends after Do gave up on it.
	var (
		mu    sync.Mutex
		conns []net.Conn
		gone  bool
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		gone = true
		for _, c := range conns {
			c.Close()
		}
	}()
	tr := &http.Transport{Protocols: &protos,
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10, MaxReceiveBufferPerConnection: 64 << 10},
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg := ts.tls.Clone()
			cfg.NextProtos = []string{"http/1.1"}
			if h2 {
				cfg.NextProtos = []string{"h2"}
			}
			c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			if gone {
				c.Close()
				return nil, net.ErrClosed
			}
			conns = append(conns, c)
			return c, nil
		}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+ts.addr+"/rooms/"+room+"/events", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if n, _ := resp.Body.Read(make([]byte, 1024)); n == 0 || resp.StatusCode != http.StatusOK {
		return ""
	}
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
	return resp.Proto
}

// playConn is the server's player connection from the client address
// addr while its session lasts, else nil.
func (ts *testServer) playConn(addr string) *transport.Conn {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for c := range ts.conns {
		if c.RemoteAddr() == addr {
			return c
		}
	}
	return nil
}

// waitPlayConn waits until ok holds for playConn(addr), checking every
// 10 ms, and reports false if wait passes first.
func (ts *testServer) waitPlayConn(addr string, wait time.Duration, ok func(*transport.Conn) bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(wait); !ok(ts.playConn(addr)); <-tick.C {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// smallSocket gives a client socket the smallest receive buffer and, on
// Linux, the smallest segments (the server's send buffer is sized by
// them), so that the server's socket to it fills after a few kilobytes
// rather than the megabytes of loopback's 64 KiB segments.
func smallSocket(_, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		_ = setsockopt(syscall.SetsockoptInt, fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1)
		if runtime.GOOS == "linux" {
			const tcpMaxSeg = 2 // TCP_MAXSEG
			_ = setsockopt(syscall.SetsockoptInt, fd, syscall.IPPROTO_TCP, tcpMaxSeg, 88)
		}
	})
}

// setsockopt calls syscall.SetsockoptInt, whose socket is an int on Unix
// and a Handle on Windows.
func setsockopt[FD ~int | ~uintptr](set func(FD, int, int, int) error, fd uintptr, level, opt, v int) error {
	return set(FD(fd), level, opt, v)
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

// chatLog is the chat lines a client received, in order; its reader adds
// while the test looks.
type chatLog struct {
	mu  sync.Mutex // guards all
	all []string
}

func (l *chatLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, line)
}

// lines returns a copy of the lines so far.
func (l *chatLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
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
