package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
)

// FeedsConfig sets up one transport's part of `bench feeds`.
type FeedsConfig struct {
	Transport string // spectator.SSE or spectator.Poll
	// ViewerServers, when set, are the nodes the viewers connect to, in
	// turn (rooms and bots stay on the target): spectators of several
	// nodes of a cluster watching the rooms of one.
	ViewerServers []string
	Viewers       int           // viewers in all (1000)
	Rooms         int           // rooms watched (8)
	BotsPerRoom   int           // moving bots per room (8)
	ChatEvery     time.Duration // each bot says a line this often (2s)
	Duration      time.Duration // measured window (10s)
	Warmup        time.Duration // after every viewer has its first event (2s)
	// Settle is the pause for the bots to start before the viewers come,
	// and for events in flight to arrive after the window (1s).
	Settle   time.Duration
	Progress func(string)
}

func (c FeedsConfig) withDefaults() FeedsConfig {
	if c.Transport == "" {
		c.Transport = spectator.SSE
	}
	if c.Viewers <= 0 {
		c.Viewers = 1000
	}
	if c.Rooms <= 0 {
		c.Rooms = 8
	}
	if c.BotsPerRoom <= 0 {
		c.BotsPerRoom = 8
	}
	if c.ChatEvery <= 0 {
		c.ChatEvery = 2 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Settle <= 0 {
		c.Settle = time.Second
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// FeedsResult is one run of one transport of `bench feeds`.
type FeedsResult struct {
	Transport string  `json:"transport"`
	Viewers   int     `json:"viewers"`
	Rooms     int     `json:"rooms"`
	WindowSec float64 `json:"windowSec"`

	Latency     Dist `json:"latency"`     // receive time minus the event's st, every snap and chat
	LatencySnap Dist `json:"latencySnap"` // snaps only
	LatencyChat Dist `json:"latencyChat"` // chat lines only

	BytesPerViewer    float64 `json:"bytesPerViewer"`    // on the wire, both directions, per second
	BytesInPerViewer  float64 `json:"bytesInPerViewer"`  // server to viewer, per second
	EventsPerViewer   float64 `json:"eventsPerViewer"`   // per second
	RequestsPerViewer float64 `json:"requestsPerViewer"` // HTTP requests per second
	ChatsLost         int64   `json:"chatsLost"`         // chat lines sent in the window that some viewer of the room missed

	ServerRSSBefore    int64    `json:"serverRssBefore,omitempty"` // rooms and bots running, no viewer
	ServerRSSAfter     int64    `json:"serverRssAfter,omitempty"`
	ServerRSSPerViewer *float64 `json:"serverRssPerViewer,omitempty"` // bytes
	ServerCPUPct       *float64 `json:"serverCpuPct,omitempty"`
	LoadCPUPct         float64  `json:"loadCpuPct"`
	LoadLag            Dist     `json:"loadLag"`
}

// viewerServer is the server viewer i connects to.
func viewerServer(t *Target, servers []string, i int) string {
	if len(servers) == 0 {
		return t.URL
	}
	return strings.TrimSuffix(servers[i%len(servers)], "/")
}

// feedViewer is one viewer and what it measured.
type feedViewer struct {
	v      *spectator.Viewer
	room   int
	snap   samples
	chat   samples
	events int64
	chats  map[string]bool
	first  chan struct{} // closed at the first event
	done   chan struct{}
}

// RunFeeds runs one transport's part of `bench feeds` against t: rooms with
// moving, chatting bots, watched by Viewers viewers spread over the rooms.
func RunFeeds(ctx context.Context, t *Target, cfg FeedsConfig) (*FeedsResult, error) {
	cfg = cfg.withDefaults()
	res := &FeedsResult{Transport: cfg.Transport, Viewers: cfg.Viewers, Rooms: cfg.Rooms}
	hc := &http.Client{Timeout: 10 * time.Second}
	rooms := make([]string, cfg.Rooms)
	for i := range rooms {
		id, err := CreateRoom(ctx, hc, t.URL, max(cfg.BotsPerRoom, 16), true)
		if err != nil {
			return nil, err
		}
		rooms[i] = id
	}

	// Bots: they move at the tick rate and chat now and then; what they
	// receive is read and dropped.
	var botCounter Counter
	var bots []*bot
	defer func() {
		for _, b := range bots {
			b.close()
		}
	}()
	for r, id := range rooms {
		for j := range cfg.BotsPerRoom {
			b, err := dialBot(ctx, t.WSURL("/ws/play"), fmt.Sprintf("r%db%d", r, j), id, &botCounter, false)
			if err != nil {
				return nil, err
			}
			bots = append(bots, b)
			go func() { _ = b.read(func(_, _ time.Time, _ []byte) {}) }()
		}
	}
	var win window
	var sentMu sync.Mutex // guards sentChats
	sentChats := make([]map[string]bool, cfg.Rooms)
	for i := range sentChats {
		sentChats[i] = make(map[string]bool)
	}
	botCtx, stopBots := context.WithCancel(ctx)
	defer stopBots()
	var bwg sync.WaitGroup
	hz := bots[0].welcome.Hz
	for i, b := range bots {
		bwg.Add(1)
		go func() {
			defer bwg.Done()
			room := i / cfg.BotsPerRoom
			tk := time.NewTicker(time.Second / time.Duration(hz))
			defer tk.Stop()
			angle := float64(i)
			every := int(cfg.ChatEvery * time.Duration(hz) / time.Second)
			phase := i * every / len(bots)
			for n := 0; ; n++ {
				select {
				case <-botCtx.Done():
					return
				case <-tk.C:
				}
				angle += 0.2
				_ = b.input(math.Cos(angle), math.Sin(angle))
				if every > 0 && n%every == phase%every {
					text := "b" + strconv.Itoa(i) + "-" + strconv.Itoa(n)
					if b.chat(text) == nil && win.in(time.Now()) {
						sentMu.Lock()
						sentChats[room][text] = true
						sentMu.Unlock()
					}
				}
			}
		}()
	}
	defer bwg.Wait()
	defer stopBots()
	if !sleepCtx(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}
	before, haveUsage := t.Usage()
	res.ServerRSSBefore = before.RSS

	// Viewers, over one counting HTTP client.
	var counter Counter
	client := counter.HTTPClient(cfg.Viewers + 16)
	defer client.CloseIdleConnections()
	viewers := make([]*feedViewer, cfg.Viewers)
	var firsts atomic.Int64
	for i := range viewers {
		fv := &feedViewer{room: i % cfg.Rooms, chats: make(map[string]bool), first: make(chan struct{}), done: make(chan struct{})}
		v, err := spectator.Watch(ctx, spectator.Options{
			Server: viewerServer(t, cfg.ViewerServers, i), Room: rooms[fv.room], Transport: cfg.Transport, Client: client, PollTimeout: 25 * time.Second,
		})
		if err != nil {
			return nil, err
		}
		fv.v = v
		viewers[i] = fv
		go fv.consume(&win, &firsts)
		if i%50 == 49 {
			cfg.Progress(fmt.Sprintf("feeds %s: %d/%d viewers", cfg.Transport, i+1, cfg.Viewers))
		}
	}
	defer func() {
		for _, fv := range viewers {
			fv.v.Close()
			<-fv.done
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for int(firsts.Load()) < cfg.Viewers {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("feeds: only %d of %d viewers got an event within 30s", firsts.Load(), cfg.Viewers)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	warmEnd := time.Now().Add(cfg.Warmup)
	done := ticker(ctx, time.Second, func() {
		cfg.Progress(fmt.Sprintf("feeds %s: %d viewers: warm-up %s left", cfg.Transport, cfg.Viewers, time.Until(warmEnd).Round(time.Second)))
	})
	ok := sleepCtx(ctx, cfg.Warmup)
	done()
	if !ok {
		return nil, ctx.Err()
	}

	lag := &lagProbe{}
	lagDone := lag.start(ctx, &win)
	defer lagDone()
	var reqs0 int64
	for _, fv := range viewers {
		reqs0 += fv.v.Stats().Requests
	}
	in0, out0 := counter.Snapshot()
	u0, _ := t.Usage()
	self0, _ := ReadUsage(os.Getpid())
	start := time.Now()
	win.start.Store(start.UnixNano())
	end := start.Add(cfg.Duration)
	done = ticker(ctx, time.Second, func() {
		cfg.Progress(fmt.Sprintf("feeds %s: %d viewers: measuring, %s left", cfg.Transport, cfg.Viewers, time.Until(end).Round(time.Second)))
	})
	ok = sleepCtx(ctx, cfg.Duration)
	stop := time.Now()
	win.end.Store(stop.UnixNano())
	done()
	in1, out1 := counter.Snapshot()
	u1, _ := t.Usage()
	self1, _ := ReadUsage(os.Getpid())
	if !ok {
		return nil, ctx.Err()
	}
	var reqs1 int64
	for _, fv := range viewers {
		reqs1 += fv.v.Stats().Requests
	}
	// Let events of the window still in flight arrive before counting
	// lost chat lines.
	sleepCtx(ctx, cfg.Settle)
	stopBots()
	bwg.Wait()
	for _, fv := range viewers {
		fv.v.Close()
		<-fv.done
	}

	secs := stop.Sub(start).Seconds()
	res.WindowSec = round3(secs)
	var snaps, chats []samples
	var events int64
	for _, fv := range viewers {
		snaps = append(snaps, fv.snap)
		chats = append(chats, fv.chat)
		events += fv.events
		for text := range sentChats[fv.room] {
			if !fv.chats[text] {
				res.ChatsLost++
			}
		}
	}
	res.LatencySnap = merge(snaps...).dist()
	res.LatencyChat = merge(chats...).dist()
	res.Latency = merge(append(snaps, chats...)...).dist()
	per := float64(cfg.Viewers) * secs
	res.BytesInPerViewer = round3(float64(in1-in0) / per)
	res.BytesPerViewer = round3(float64(in1-in0+out1-out0) / per)
	res.EventsPerViewer = round3(float64(events) / per)
	res.RequestsPerViewer = round3(float64(reqs1-reqs0) / per)
	res.ServerCPUPct, res.ServerRSSAfter, res.ServerRSSPerViewer = serverUsage(haveUsage, before, u0, u1, cfg.Viewers)
	res.LoadCPUPct = CPUPercent(self0, self1)
	res.LoadLag = lag.result()
	return res, nil
}

// consume reads the viewer's events and measures the ones in the window.
func (fv *feedViewer) consume(w *window, firsts *atomic.Int64) {
	defer close(fv.done)
	for e := range fv.v.Events() {
		now := time.Now()
		if fv.first != nil {
			close(fv.first)
			fv.first = nil
			firsts.Add(1)
		}
		if e.Type == "chat" {
			fv.chats[jsonString(e.Data, "text")] = true
		}
		if !w.in(now) {
			continue
		}
		fv.events++
		st, ok := jsonInt(e.Data, "st")
		if !ok {
			continue
		}
		ms := float64(now.UnixNano())/1e6 - float64(st)
		switch e.Type {
		case "snap":
			fv.snap.add(ms)
		case "chat":
			fv.chat.add(ms)
		}
	}
}

// jsonInt finds the integer value of the first "key": in a JSON object of
// the feed (whose keys and the bots' chat lines hold no such text).
func jsonInt(data []byte, key string) (int64, bool) {
	i := bytes.Index(data, []byte(`"`+key+`":`))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(key)+3:]
	j := 0
	for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '-') {
		j++
	}
	v, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v, err == nil
}

// jsonString finds the string value of "key": (without escapes).
func jsonString(data []byte, key string) string {
	i := bytes.Index(data, []byte(`"`+key+`":"`))
	if i < 0 {
		return ""
	}
	rest := data[i+len(key)+4:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
