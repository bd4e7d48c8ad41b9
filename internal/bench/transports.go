package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/wire"
)

// TransportsConfig sets up `bench transports`.
type TransportsConfig struct {
	Messages int // chat lines delivered over every transport (100)
	Senders  int // players sending them in turn, within the chat limit (10)
	// Interval between two lines (20ms): long enough that each reaches a
	// long-poll viewer in an answer of its own, as in the seed's count.
	Interval time.Duration
	// Header is added to every HTTP request of the viewers (e.g. what a
	// browser sends), so that its weight shows in the byte counts.
	Header http.Header
	// Settle is the pause after the connections open, for the room's
	// state to settle (1.5s).
	Settle   time.Duration
	Progress func(string)
}

func (c TransportsConfig) withDefaults() TransportsConfig {
	if c.Messages <= 0 {
		c.Messages = 100
	}
	if c.Senders <= 0 {
		c.Senders = 10
	}
	if c.Interval <= 0 {
		c.Interval = 20 * time.Millisecond
	}
	if c.Settle <= 0 {
		c.Settle = 1500 * time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// TransportFigures are one transport's figures for the same messages.
type TransportFigures struct {
	Transport string `json:"transport"`
	Received  int    `json:"received"` // of the messages sent
	Requests  int64  `json:"requests"` // HTTP requests made, the opening one included
	// Bytes on the wire while the messages flowed, each direction, HTTP
	// and frame headers included; frames and events that were not the
	// messages (snapshots, pings) are left out, and counted in Other.
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
	Other    int64 `json:"other"`
	// The connection's opening: request and response headers, and the
	// events every new viewer gets first.
	SetupIn  int64 `json:"setupIn"`
	SetupOut int64 `json:"setupOut"`
	Latency  Dist  `json:"latency"` // receive time minus the sender's send time
}

// TransportsResult is one run of the message part of `bench transports`.
type TransportsResult struct {
	Messages int                `json:"messages"`
	Figures  []TransportFigures `json:"figures"` // WebSocket, SSE, long-poll
}

// sentLine is a chat line and when it was sent.
type sentLine struct {
	text string
	at   time.Time
}

// arrivals records when each line reached one receiver.
type arrivals struct {
	mu sync.Mutex // guards at
	at map[string]time.Time
}

func (a *arrivals) got(text string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.at[text]; !ok {
		a.at[text] = now
	}
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.at)
}

// RunTransports sends the same chat lines once and measures them at a
// WebSocket player, an SSE viewer and a long-poll viewer of the room.
func RunTransports(ctx context.Context, t *Target, cfg TransportsConfig) (*TransportsResult, error) {
	cfg = cfg.withDefaults()
	hc := &http.Client{Timeout: 10 * time.Second}
	room, err := CreateRoom(ctx, hc, t.URL, cfg.Senders+1, true)
	if err != nil {
		return nil, err
	}
	var senders []*bot
	defer func() {
		for _, b := range senders {
			b.close()
		}
	}()
	var dropCounter Counter
	for i := range cfg.Senders {
		b, err := dialBot(ctx, t.WSURL("/ws/play"), fmt.Sprintf("sender-%d", i), room, &dropCounter, false)
		if err != nil {
			return nil, err
		}
		senders = append(senders, b)
		go func() { _ = b.read(func(_, _ time.Time, _ []byte) {}) }()
	}

	// The WebSocket receiver: a player of the room on a counting connection.
	var wsC Counter
	wsArr := &arrivals{at: map[string]time.Time{}}
	d := websocket.Dialer{NetDialContext: wsC.Dial(), HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, t.WSURL("/ws/play"), cfg.Header)
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	wsSetupIn, wsSetupOut := wsC.Snapshot()
	var wsMu sync.Mutex // guards wsOther, wsOtherOut and counting
	var wsOther, wsOtherOut int64
	counting := false
	pings := ws.PingHandler()
	ws.SetPingHandler(func(data string) error {
		wsMu.Lock()
		if counting {
			wsOther += int64(2 + len(data))    // ping in
			wsOtherOut += int64(6 + len(data)) // masked pong out
		}
		wsMu.Unlock()
		return pings(data)
	})
	wb := &bot{ws: ws}
	if err := wb.chatJoin(room); err != nil {
		return nil, err
	}
	go func() {
		_ = wb.read(func(at, _ time.Time, f []byte) {
			h, err := player.Head(f)
			if err == nil && h.T == "chat" {
				wsArr.got(string(h.Text), at)
				return
			}
			wsMu.Lock()
			if counting {
				wsOther += int64(wsFrameHeader(len(f)) + len(f))
			}
			wsMu.Unlock()
		})
	}()

	// The SSE and long-poll viewers, each on its own counting client.
	type feedSide struct {
		c     Counter
		v     *spectator.Viewer
		arr   *arrivals
		mu    sync.Mutex // guards other and ready
		other int64
		ready int // events seen before the messages
	}
	sides := map[string]*feedSide{spectator.SSE: {}, spectator.Poll: {}}
	for kind, s := range sides {
		s.arr = &arrivals{at: map[string]time.Time{}}
		v, err := spectator.Watch(ctx, spectator.Options{
			Server: t.URL, Room: room, Transport: kind, Client: s.c.HTTPClient(4), Header: cfg.Header,
		})
		if err != nil {
			return nil, err
		}
		defer v.Close()
		s.v = v
		go func() {
			for e := range v.Events() {
				now := time.Now()
				if e.Type == "chat" {
					s.arr.got(jsonString(e.Data, "text"), now)
					continue
				}
				s.mu.Lock()
				if s.arr.count() > 0 || s.ready < 0 {
					s.other += feedEventSize(kind, e)
				} else {
					s.ready++
				}
				s.mu.Unlock()
			}
		}()
	}
	// Let every connection open and the room's state settle (the first
	// pings make each player's rtt known, which the feed publishes).
	cfg.Progress("transports: connecting")
	if !sleepCtx(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}
	setup := map[string][2]int64{}
	for kind, s := range sides {
		in, out := s.c.Snapshot()
		setup[kind] = [2]int64{in, out}
		s.mu.Lock()
		s.ready = -1
		s.mu.Unlock()
	}
	ws0in, ws0out := wsC.Snapshot()
	wsMu.Lock()
	counting = true
	wsMu.Unlock()

	lines := make([]sentLine, cfg.Messages)
	for i := range lines {
		lines[i].text = fmt.Sprintf("m%03d", i)
		lines[i].at = time.Now()
		if err := senders[i%len(senders)].chat(lines[i].text); err != nil {
			return nil, err
		}
		if i%10 == 9 {
			cfg.Progress(fmt.Sprintf("transports: %d/%d messages sent", i+1, cfg.Messages))
		}
		if !sleepCtx(ctx, cfg.Interval) {
			return nil, ctx.Err()
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (wsArr.count() < cfg.Messages ||
		sides[spectator.SSE].arr.count() < cfg.Messages || sides[spectator.Poll].arr.count() < cfg.Messages) {
		sleepCtx(ctx, 20*time.Millisecond)
	}
	sleepCtx(ctx, 100*time.Millisecond) // the next poll goes out

	res := &TransportsResult{Messages: cfg.Messages}
	ws1in, ws1out := wsC.Snapshot()
	wsMu.Lock()
	wf := TransportFigures{
		Transport: "websocket", Received: wsArr.count(),
		BytesIn: ws1in - ws0in - wsOther, BytesOut: ws1out - ws0out - wsOtherOut, Other: wsOther + wsOtherOut,
		SetupIn: wsSetupIn, SetupOut: wsSetupOut, Requests: 1,
		Latency: latencies(lines, wsArr),
	}
	wsMu.Unlock()
	res.Figures = append(res.Figures, wf)
	for _, kind := range []string{spectator.SSE, spectator.Poll} {
		s := sides[kind]
		in, out := s.c.Snapshot()
		s.mu.Lock()
		f := TransportFigures{
			Transport: map[string]string{spectator.SSE: "sse", spectator.Poll: "long-poll"}[kind],
			Received:  s.arr.count(), Requests: s.v.Stats().Requests,
			BytesIn: in - setup[kind][0] - s.other, BytesOut: out - setup[kind][1], Other: s.other,
			SetupIn: setup[kind][0], SetupOut: setup[kind][1],
			Latency: latencies(lines, s.arr),
		}
		s.mu.Unlock()
		res.Figures = append(res.Figures, f)
	}
	return res, nil
}

// chatJoin sends a join for room and waits for the welcome.
func (b *bot) chatJoin(room string) error {
	join, _ := wire.Encode(&wire.Join{Name: "receiver", Room: room})
	if err := b.ws.WriteMessage(websocket.BinaryMessage, join); err != nil {
		return err
	}
	_ = b.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer b.ws.SetReadDeadline(time.Time{})
	for {
		_, f, err := b.ws.ReadMessage()
		if err != nil {
			return err
		}
		if h, err := player.Head(f); err == nil {
			switch h.T {
			case "welcome":
				return nil
			case "error":
				return fmt.Errorf("join %s refused", room)
			}
		}
	}
}

// wsFrameHeader is the header size of an unmasked server frame.
func wsFrameHeader(n int) int {
	switch {
	case n < 126:
		return 2
	case n < 1<<16:
		return 4
	}
	return 10
}

// feedEventSize is the bytes an event takes in its transport's body.
func feedEventSize(kind string, e spectator.Event) int64 {
	if kind == spectator.SSE {
		return int64(len(httpapi.AppendSSE(nil, e.ID, e.Type, e.Data)))
	}
	b, _ := json.Marshal(map[string]any{"id": e.ID, "type": e.Type, "data": e.Data})
	return int64(len(b)) + 1
}

// latencies returns the delay of every line that arrived.
func latencies(lines []sentLine, a *arrivals) Dist {
	a.mu.Lock()
	defer a.mu.Unlock()
	var s samples
	for _, l := range lines {
		if at, ok := a.at[l.text]; ok {
			s.addDur(at.Sub(l.at))
		}
	}
	return s.dist()
}

// IdleResult is the server memory held by idle connections of one kind.
type IdleResult struct {
	Kind        string  `json:"kind"` // websocket, sse, long-poll
	Conns       int     `json:"conns"`
	RSSBefore   int64   `json:"rssBefore"`
	RSSAfter    int64   `json:"rssAfter"`
	RSSPerConn  float64 `json:"rssPerConn"` // bytes
	Description string  `json:"description"`
}

// RunIdle opens n idle connections of one kind to t and reports the
// growth of the server's RSS per connection. WebSocket connections are
// players seated in rooms of 16 who send nothing (they still receive the
// room's snapshots, at the server's tick rate); SSE streams and long-polls
// (parked, timeout 55 s) watch one room where nothing moves, so they get
// nothing. The connections are raw sockets, except the players.
func RunIdle(ctx context.Context, t *Target, kind string, n int, progress func(string)) (*IdleResult, error) {
	if progress == nil {
		progress = func(string) {}
	}
	res := &IdleResult{Kind: kind, Conns: n}
	hc := &http.Client{Timeout: 10 * time.Second}
	sleepCtx(ctx, 300*time.Millisecond)
	before, ok := t.Usage()
	if !ok {
		return nil, fmt.Errorf("idle memory: the server's process is unknown (give -pid with -server)")
	}
	res.RSSBefore = before.RSS
	addr := strings.TrimPrefix(t.URL, "http://")
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	switch kind {
	case "websocket":
		res.Description = "players seated in rooms of 16, sending nothing"
		var c Counter
		var rooms []string
		for i := range n {
			if i%16 == 0 {
				id, err := CreateRoom(ctx, hc, t.URL, 16, true)
				if err != nil {
					return nil, err
				}
				rooms = append(rooms, id)
			}
			b, err := dialBot(ctx, t.WSURL("/ws/play"), fmt.Sprintf("idle-%d", i), rooms[len(rooms)-1], &c, false)
			if err != nil {
				return nil, err
			}
			closers = append(closers, b.close)
			go func() { _ = b.read(func(_, _ time.Time, _ []byte) {}) }()
			if i%100 == 99 {
				progress(fmt.Sprintf("idle websocket: %d/%d", i+1, n))
			}
		}
	case "sse", "long-poll":
		id, err := CreateRoom(ctx, hc, t.URL, 16, false)
		if err != nil {
			return nil, err
		}
		path := "/rooms/" + id + "/events"
		res.Description = "SSE streams of a room where nothing moves"
		if kind == "long-poll" {
			res.Description = "long-polls parked on a room where nothing moves (timeout 55 s)"
			resp, err := hc.Get(t.URL + "/rooms/" + id + "/poll")
			if err != nil {
				return nil, err
			}
			var a struct {
				Last uint64 `json:"last"`
			}
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err != nil {
				return nil, err
			}
			path = fmt.Sprintf("/rooms/%s/poll?after=%d&timeout=55", id, a.Last)
		}
		for i := range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			closers = append(closers, func() { c.Close() })
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr)
			if kind == "sse" { // read up to the end of the headers
				r := bufio.NewReader(c)
				status, err := r.ReadString('\n')
				if err != nil {
					return nil, err
				}
				if !strings.Contains(status, " 200 ") {
					return nil, fmt.Errorf("idle memory: SSE stream %d answered %q", i+1, strings.TrimSpace(status))
				}
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return nil, err
					}
					if line == "\r\n" {
						break
					}
				}
			}
			if i%100 == 99 {
				progress(fmt.Sprintf("idle %s: %d/%d", kind, i+1, n))
			}
		}
		if err := waitSpectators(ctx, hc, t.URL, id, n); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("idle memory: unknown kind %q", kind)
	}
	sleepCtx(ctx, idleSettle)
	after, _ := t.Usage()
	res.RSSAfter = after.RSS
	res.RSSPerConn = round3(float64(after.RSS-before.RSS) / float64(n))
	return res, nil
}

// waitSpectators waits until the room lists n spectators.
func waitSpectators(ctx context.Context, hc *http.Client, server, room string, n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get(server + "/api/rooms")
		if err != nil {
			return err
		}
		var list struct {
			Rooms []struct {
				ID         string `json:"id"`
				Spectators int    `json:"spectators"`
			} `json:"rooms"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil {
			return err
		}
		got, listed := 0, false
		for _, r := range list.Rooms {
			if r.ID == room {
				got, listed = r.Spectators, true
			}
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			if !listed {
				return fmt.Errorf("idle memory: room %s is no longer listed", room)
			}
			return fmt.Errorf("idle memory: %d of %d viewers registered", got, n)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// idleSettle is how long the idle connections sit before the server's
// RSS is read: long enough for the server to take over parked polls (it
// does after a second). Memory its runtime frees then stays in the RSS for
// a while (6 s made no difference), so RSS shows the peak of the parking.
var idleSettle = 2 * time.Second
