package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/game"
)

// GameConfig sets up `bench game`.
type GameConfig struct {
	Players  int           // bots (1000)
	RoomSize int           // seats per room (16)
	InputHz  int           // inputs per second per bot (the room's tick rate)
	Duration time.Duration // measured window (20s)
	Warmup   time.Duration // after every bot has joined, before the window (5s)
	// Dials is how many bots connect at once (32).
	Dials int
	// Delta makes the bots ask for delta snapshots (and acknowledge them).
	Delta bool
	// RTC makes the bots take their state over WebRTC DataChannels
	// (contract 1.1) and send their inputs there once open.
	RTC bool
	// RTCInputsOnWebSocket keeps the inputs of RTC bots on their
	// WebSocket: the channel carries state only, as for a client that
	// never sends on it.
	RTCInputsOnWebSocket bool
	// Mode is the game mode of the rooms (empty: the server's default).
	Mode string
	// Bot, when set, makes the player of each bot (seeded by its number);
	// the bots play blind (they do not decode snapshots). Default: the
	// wandering bot of the mode's schema (game.NewWanderBot).
	Bot func(seed uint64) game.Bot
	// Ticks, when set, measures tick durations during the window.
	Ticks TickProbe
	// Progress receives a status line now and then; nil is quiet.
	Progress func(string)
	// OnWindow, when set, is called as the measured window opens (true)
	// and closes (false); profilers hook in here.
	OnWindow func(open bool)
}

func (c GameConfig) withDefaults() GameConfig {
	if c.Players <= 0 {
		c.Players = 1000
	}
	if c.RoomSize <= 0 {
		c.RoomSize = 16
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Dials <= 0 {
		c.Dials = 32
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// TickProbe measures the server's tick durations over a window.
type TickProbe interface {
	// Begin starts measuring the given rooms.
	Begin(rooms []string)
	// End stops and returns the durations in ms; ok is false when none
	// could be measured. Source names where they came from.
	End() (d Dist, source string, ok bool)
}

// GameResult is one run of `bench game`. Times are in milliseconds, rates
// per second of the measured window.
type GameResult struct {
	Players   int     `json:"players"`
	Rooms     int     `json:"rooms"`
	Hz        int     `json:"hz"`
	InputHz   int     `json:"inputHz"`
	WindowSec float64 `json:"windowSec"`
	Delta     bool    `json:"delta"` // the bots used delta snapshots
	RTC       bool    `json:"rtc"`   // the bots took state over WebRTC
	// RTCInputsOnWebSocket: with RTC, the bots sent their inputs on the
	// WebSocket.
	RTCInputsOnWebSocket bool `json:"rtcInputsOnWebSocket,omitempty"`
	// ChannelPct is the share of the window's snapshots that came on the
	// bots' state channels (with RTC).
	ChannelPct float64 `json:"channelPct,omitempty"`
	// InputsOnChannelPct is the share of the bots' inputs of the window
	// that they sent on their state channels (with RTC).
	InputsOnChannelPct float64 `json:"inputsOnChannelPct,omitempty"`
	Mode               string  `json:"mode"`    // the rooms' game mode (as the server named it)
	Dropped            int     `json:"dropped"` // bots disconnected during the run

	TicksRun     int64   `json:"ticksRun"`     // distinct tick numbers seen, summed over rooms
	TicksNominal int64   `json:"ticksNominal"` // tick numbers the schedule covered in the window
	TicksPct     float64 `json:"ticksPct"`
	DeliveredPct float64 `json:"deliveredPct"` // snapshots received / (ticks run * players)

	Tick       *Dist  `json:"tick,omitempty"` // tick duration, when a probe measured it
	TickSource string `json:"tickSource,omitempty"`
	Gap        Dist   `json:"gap"`     // time between snapshots at a client
	Latency    Dist   `json:"latency"` // receive time minus snapshot st
	// The same two measured at the kernel's receive timestamp of each
	// frame, which leaves out the load process's scheduling delays.
	GapRx     Dist `json:"gapRx"`
	LatencyRx Dist `json:"latencyRx"`

	BytesInPerClient  float64 `json:"bytesInPerClient"`  // on the wire, server to client, per second
	BytesOutPerClient float64 `json:"bytesOutPerClient"` // on the wire, client to server, per second
	MsgsInPerClient   float64 `json:"msgsInPerClient"`   // frames received per second
	MsgsOutPerClient  float64 `json:"msgsOutPerClient"`  // inputs sent per second

	ServerCPUPct       *float64 `json:"serverCpuPct,omitempty"` // of one core, over the window
	ServerRSSBefore    int64    `json:"serverRssBefore,omitempty"`
	ServerRSSAfter     int64    `json:"serverRssAfter,omitempty"`
	ServerRSSPerPlayer *float64 `json:"serverRssPerPlayer,omitempty"` // bytes
	LoadCPUPct         float64  `json:"loadCpuPct"`                   // this process, of one core
	LoadLag            Dist     `json:"loadLag"`                      // lateness of a 5 ms sleep in this process
}

// gameBot is one bot and what it measured. Only its reader goroutine
// writes the measurements until the run ends.
type gameBot struct {
	b      *bot
	room   int
	lat    samples
	gap    samples
	latRx  samples
	gapRx  samples
	ticks  []uint64
	last   time.Time
	lastRx time.Time
	snaps  int64
	other  int64 // frames other than snaps in the window
	done   chan error
	probe  bool // overload: reads each frame as it arrives (its gaps and latencies count)
	// With timed inputs (bot.timeInputs): from each input sent to the
	// first snapshot acknowledging it; acked is the newest seq seen acked.
	inputLat samples
	acked    uint64
	// mu guards what frame records: with RTC the state channel's
	// callbacks record too; chSnaps counts the snapshots that came on the
	// channel.
	mu      sync.Mutex
	chSnaps int64
}

// window is the measured interval, in Unix ns; end 0 while it is open.
type window struct{ start, end atomic.Int64 }

func (w *window) in(t time.Time) bool {
	s, e := w.start.Load(), w.end.Load()
	ns := t.UnixNano()
	return s != 0 && ns >= s && (e == 0 || ns < e)
}

// RunGame runs one round of `bench game` against t.
func RunGame(ctx context.Context, t *Target, cfg GameConfig) (*GameResult, error) {
	cfg = cfg.withDefaults()
	res := &GameResult{Players: cfg.Players}
	before, haveUsage := t.Usage()
	res.ServerRSSBefore = before.RSS

	nRooms := (cfg.Players + cfg.RoomSize - 1) / cfg.RoomSize
	res.Rooms = nRooms
	hc := &http.Client{Timeout: 10 * time.Second}
	rooms := make([]string, nRooms)
	for i := range rooms {
		id, err := CreateRoomOf(ctx, hc, t.URL, cfg.Mode, cfg.RoomSize, true)
		if err != nil {
			return nil, err
		}
		rooms[i] = id
	}

	var counter Counter
	var win window
	var api *webrtc.API
	if cfg.RTC {
		api = rtcAPI(t.URL)
	}
	bots := make([]*gameBot, cfg.Players)
	var mu sync.Mutex // guards dialErr
	var dialErr error
	var connected atomic.Int64
	sem := make(chan struct{}, cfg.Dials)
	var wg sync.WaitGroup
	progressDone := ticker(ctx, time.Second, func() {
		cfg.Progress(fmt.Sprintf("game: %d/%d bots joined", connected.Load(), cfg.Players))
	})
	for i := range bots {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			gb := &gameBot{room: i / cfg.RoomSize, done: make(chan error, 1)}
			b, err := dialBot(ctx, t.WSURL("/ws/play"), fmt.Sprintf("bot-%d", i+1), rooms[gb.room], &counter, cfg.Delta)
			if err != nil {
				mu.Lock()
				dialErr = fmt.Errorf("bot %d: %w", i+1, err)
				mu.Unlock()
				return
			}
			if cfg.Bot != nil {
				b.player = cfg.Bot(uint64(i + 1))
			}
			gb.b = b
			bots[i] = gb
			connected.Add(1)
			go func() {
				gb.done <- b.read(func(at, rx time.Time, f []byte) { gb.frame(&win, at, rx, f, false) })
			}()
			if api != nil {
				if err := b.offer(api, &counter, cfg.RTCInputsOnWebSocket, func(at time.Time, f []byte) { gb.frame(&win, at, time.Time{}, f, true) }); err != nil {
					mu.Lock()
					dialErr = fmt.Errorf("bot %d: offer: %w", i+1, err)
					mu.Unlock()
				}
			}
		}()
		mu.Lock()
		err := dialErr
		mu.Unlock()
		if err != nil || ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	progressDone()
	defer func() {
		for _, gb := range bots {
			if gb != nil {
				gb.b.close()
			}
		}
	}()
	if dialErr != nil {
		return nil, dialErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hz := bots[0].b.welcome.Hz
	res.Hz = hz
	res.Delta = cfg.Delta
	res.RTC = cfg.RTC
	res.RTCInputsOnWebSocket = cfg.RTC && cfg.RTCInputsOnWebSocket
	res.Mode = bots[0].b.welcome.Mode
	if cfg.InputHz <= 0 {
		cfg.InputHz = hz
	}
	res.InputHz = cfg.InputHz

	// Inputs: a few sender goroutines, spread in phase over one period.
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	var sent atomic.Int64
	senders := min(len(bots), 64)
	var swg sync.WaitGroup
	for g := range senders {
		swg.Add(1)
		go func() {
			defer swg.Done()
			sendInputs(sendCtx, bots, g, senders, cfg.InputHz, &win, &sent)
		}()
	}
	defer swg.Wait()
	defer stopSend()

	lag := &lagProbe{}
	lagDone := lag.start(ctx, &win)
	defer lagDone()

	warmEnd := time.Now().Add(cfg.Warmup)
	done := ticker(ctx, time.Second, func() {
		cfg.Progress(fmt.Sprintf("game: %d bots, %d rooms: warm-up %s left", cfg.Players, nRooms, time.Until(warmEnd).Round(time.Second)))
	})
	if !sleepCtx(ctx, cfg.Warmup) {
		done()
		return nil, ctx.Err()
	}
	done()

	// The measured window.
	if cfg.Ticks != nil {
		cfg.Ticks.Begin(rooms)
	}
	in0, out0 := counter.Snapshot()
	inputs0, onChannel0 := inputTotals(bots)
	u0, _ := t.Usage()
	self0, _ := ReadUsage(os.Getpid())
	if cfg.OnWindow != nil {
		cfg.OnWindow(true)
	}
	start := time.Now()
	win.start.Store(start.UnixNano())
	end := start.Add(cfg.Duration)
	done = ticker(ctx, time.Second, func() {
		cfg.Progress(fmt.Sprintf("game: %d bots, %d rooms: measuring, %s left", cfg.Players, nRooms, time.Until(end).Round(time.Second)))
	})
	ok := sleepCtx(ctx, cfg.Duration)
	stop := time.Now()
	win.end.Store(stop.UnixNano())
	done()
	in1, out1 := counter.Snapshot()
	inputs1, onChannel1 := inputTotals(bots)
	u1, _ := t.Usage()
	self1, _ := ReadUsage(os.Getpid())
	if cfg.OnWindow != nil {
		cfg.OnWindow(false)
	}
	if !ok {
		return nil, ctx.Err()
	}
	if cfg.Ticks != nil {
		if d, src, ok := cfg.Ticks.End(); ok {
			res.Tick, res.TickSource = &d, src
		}
	}
	secs := stop.Sub(start).Seconds()
	res.WindowSec = round3(secs)
	stopSend()
	swg.Wait()
	for _, gb := range bots {
		gb.b.close()
	}
	for _, gb := range bots {
		if err := <-gb.done; err != nil && gb.dropped(stop) {
			res.Dropped++
		}
	}

	// Ticks: the distinct tick numbers any bot of a room saw in the
	// window, against the span of tick numbers the schedule covered.
	perRoom := make([]map[uint64]struct{}, nRooms)
	for i := range perRoom {
		perRoom[i] = make(map[uint64]struct{})
	}
	var lat, gap, latRx, gapRx []samples
	var snaps, frames, viaChannel int64
	for _, gb := range bots {
		for _, n := range gb.ticks {
			perRoom[gb.room][n] = struct{}{}
		}
		lat = append(lat, gb.lat)
		gap = append(gap, gb.gap)
		latRx = append(latRx, gb.latRx)
		gapRx = append(gapRx, gb.gapRx)
		snaps += gb.snaps
		viaChannel += gb.chSnaps
		frames += gb.snaps + gb.other
	}
	var seatTicks int64
	for r, set := range perRoom {
		if len(set) == 0 {
			continue
		}
		lo, hi := uint64(math.MaxUint64), uint64(0)
		for n := range set {
			lo, hi = min(lo, n), max(hi, n)
		}
		res.TicksRun += int64(len(set))
		res.TicksNominal += int64(hi - lo + 1)
		seats := min(cfg.RoomSize, cfg.Players-r*cfg.RoomSize)
		seatTicks += int64(len(set)) * int64(seats)
	}
	if res.TicksNominal > 0 {
		res.TicksPct = round3(100 * float64(res.TicksRun) / float64(res.TicksNominal))
	}
	if seatTicks > 0 {
		res.DeliveredPct = round3(100 * float64(snaps) / float64(seatTicks))
	}
	if snaps > 0 && cfg.RTC {
		res.ChannelPct = round3(100 * float64(viaChannel) / float64(snaps))
	}
	if inputs := inputs1 - inputs0; inputs > 0 && cfg.RTC {
		res.InputsOnChannelPct = round3(100 * float64(onChannel1-onChannel0) / float64(inputs))
	}
	res.Latency = merge(lat...).dist()
	res.Gap = merge(gap...).dist()
	res.LatencyRx = merge(latRx...).dist()
	res.GapRx = merge(gapRx...).dist()
	perClient := float64(cfg.Players) * secs
	res.BytesInPerClient = round3(float64(in1-in0) / perClient)
	res.BytesOutPerClient = round3(float64(out1-out0) / perClient)
	res.MsgsInPerClient = round3(float64(frames) / perClient)
	res.MsgsOutPerClient = round3(float64(sent.Load()) / perClient)
	res.ServerCPUPct, res.ServerRSSAfter, res.ServerRSSPerPlayer = serverUsage(haveUsage, before, u0, u1, cfg.Players)
	res.LoadCPUPct = CPUPercent(self0, self1)
	res.LoadLag = lag.result()
	return res, nil
}

// frame records one frame received by the bot, on its WebSocket or, with
// viaChannel, its state channel. Delta frames are applied whether or not
// the window is open, so the bot keeps its baselines.
func (gb *gameBot) frame(w *window, at, rx time.Time, f []byte, viaChannel bool) {
	h := frameHead(f)
	if l := gb.b.link(); l != nil && !viaChannel && l.signal(h, f) {
		return
	}
	// Two readers with a channel (the WebSocket's and the channel's), and
	// overload reads the counts while the players still play.
	gb.mu.Lock()
	defer gb.mu.Unlock()
	n, st, ok := gb.b.snapshot(h, f)
	if !w.in(at) {
		return
	}
	if !ok {
		gb.other++
		return
	}
	gb.snaps++
	if viaChannel {
		gb.chSnaps++
	}
	gb.lat.add(float64(at.UnixNano())/1e6 - float64(st))
	if !gb.last.IsZero() {
		gb.gap.addDur(at.Sub(gb.last))
	}
	gb.last = at
	gb.ticks = append(gb.ticks, n)
	if ack, d, ok := gb.b.inputDelay(f, gb.acked, at); ok {
		gb.acked = ack
		gb.inputLat.addDur(d)
	}
	if !rx.IsZero() {
		gb.latRx.add(float64(rx.UnixNano())/1e6 - float64(st))
		if !gb.lastRx.IsZero() {
			gb.gapRx.addDur(rx.Sub(gb.lastRx))
		}
		gb.lastRx = rx
	}
}

// dropped reports whether the bot's connection had ended before stop,
// judged by its last snapshot.
func (gb *gameBot) dropped(stop time.Time) bool {
	return gb.last.IsZero() || stop.Sub(gb.last) > 2*time.Second
}

// inputTotals returns how many inputs the bots have sent, and how many of
// them on their state channels.
func inputTotals(bots []*gameBot) (inputs, onChannel int64) {
	for _, gb := range bots {
		inputs += int64(gb.b.seq.Load())
		if l := gb.b.link(); l != nil {
			onChannel += l.inputs.Load()
		}
	}
	return inputs, onChannel
}

// sendInputs sends inputs for bots g, g+step, ... at hz, starting at a
// phase of g/step of a period.
func sendInputs(ctx context.Context, bots []*gameBot, g, step, hz int, w *window, sent *atomic.Int64) {
	period := time.Second / time.Duration(hz)
	if !sleepCtx(ctx, period*time.Duration(g)/time.Duration(step)) {
		return
	}
	var mine []*gameBot
	for i := g; i < len(bots); i += step {
		mine = append(mine, bots[i])
	}
	tk := time.NewTicker(period)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		for _, gb := range mine {
			if gb.b.play() == nil && w.in(time.Now()) {
				sent.Add(1)
			}
		}
	}
}

// lagProbe measures how late a 5 ms sleep wakes up in this process: a
// baseline for the latencies the bots see, which include this process's
// own scheduling delay.
type lagProbe struct {
	mu sync.Mutex // guards s
	s  samples
}

func (p *lagProbe) start(ctx context.Context, w *window) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			t0 := time.Now()
			time.Sleep(5 * time.Millisecond)
			now := time.Now()
			if w.in(now) {
				p.mu.Lock()
				p.s.addDur(now.Sub(t0) - 5*time.Millisecond)
				p.mu.Unlock()
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (p *lagProbe) result() Dist {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.dist()
}

// CreateRoom creates a room of the server's default mode; see CreateRoomOf.
func CreateRoom(ctx context.Context, hc *http.Client, server string, maxPlayers int, private bool) (string, error) {
	return CreateRoomOf(ctx, hc, server, "", maxPlayers, private)
}

// CreateRoomOf creates a room with maxPlayers seats through POST /api/rooms
// and returns its id.
func CreateRoomOf(ctx context.Context, hc *http.Client, server, mode string, maxPlayers int, private bool) (string, error) {
	body, _ := json.Marshal(map[string]any{"maxPlayers": maxPlayers, "private": private, "mode": mode})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+"/api/rooms", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	defer resp.Body.Close()
	var info struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create room: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.ID == "" {
		return "", fmt.Errorf("create room: bad answer: %v", err)
	}
	return info.ID, nil
}

// sleepCtx sleeps for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ticker calls f every d until the returned stop is called.
func ticker(ctx context.Context, d time.Duration, f func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		f()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { cancel(); <-done }
}
