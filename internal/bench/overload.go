package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/wire"
)

// OverloadConfig sets up `bench overload`: players join a server faster
// and in greater number than it can carry, and the run shows whether the
// server refuses the surplus cleanly while the players in play keep their
// snapshots, and how fast it takes joins again once load falls.
type OverloadConfig struct {
	Offered  int           // players that try to join (2000)
	JoinRate int           // joins tried per second (100)
	Duration time.Duration // measured window once every offer is answered (10s)
	InputHz  int           // inputs per second of each player in play (20, whatever the tick rate)
	// One player in ProbeEvery (8) reads each frame as it arrives, and the
	// gaps and latencies are theirs; the others read their sockets in
	// batches, every BatchEvery (25ms), so that the load process costs less
	// per snapshot than the server and the server saturates first.
	// Snapshots delivered are counted over every player. ProbeEvery 1 makes
	// every player a probe.
	ProbeEvery int
	BatchEvery time.Duration
	// Progress receives a status line now and then; nil is quiet.
	Progress func(string)
}

func (c OverloadConfig) withDefaults() OverloadConfig {
	if c.Offered <= 0 {
		c.Offered = 2000
	}
	if c.JoinRate <= 0 {
		c.JoinRate = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.InputHz <= 0 {
		c.InputHz = 20
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 8
	}
	if c.BatchEvery <= 0 {
		c.BatchEvery = 25 * time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// OverloadResult is one run of `bench overload`.
type OverloadResult struct {
	Hz      int `json:"hz"`
	InputHz int `json:"inputHz"`
	Probes  int `json:"probes"` // players in whose gaps and latencies are measured
	Offered int `json:"offered"`
	Joined  int `json:"joined"`
	Refused int `json:"refused"` // refused with `overloaded`, close 1013
	Failed  int `json:"failed"`  // refused otherwise, or timed out
	// JoinedIn and RefusedIn are how long joins took to be answered, in
	// ms, from the dial to the welcome or the refusal.
	JoinedIn, RefusedIn Dist
	// FailedWhy counts the failures by reason (see failureReason).
	FailedWhy map[string]int `json:"failedWhy,omitempty"`
	Dropped   int            `json:"dropped"`  // joined, then lost during the window
	FirstRef  int            `json:"firstRef"` // players in when the first refusal came (0: none)

	DeliveredPct      float64 `json:"deliveredPct"`      // snapshots / room ticks, mean over players in play
	WorstDeliveredPct float64 `json:"worstDeliveredPct"` // the same, the worst player
	Gap               Dist    `json:"gap"`
	// InputDelay is, for the probes, how long from sending an input to the
	// first snapshot that says the room applied it (its `ack`).
	InputDelay Dist `json:"inputDelay"`
	Latency    Dist `json:"latency"`
	// RecoverSec is how long after half the players left a join was taken
	// again (-1: not within 30 s).
	RecoverSec   float64  `json:"recoverSec"`
	ServerCPUPct *float64 `json:"serverCpuPct,omitempty"`
	LoadCPUPct   float64  `json:"loadCpuPct"` // this process, of one core, in the window
}

// RunOverload runs one round of `bench overload` against t (a server with
// no room-creation limit, so that `auto` can make rooms as fast as players
// come).
func RunOverload(ctx context.Context, t *Target, cfg OverloadConfig) (*OverloadResult, error) {
	cfg = cfg.withDefaults()
	res := &OverloadResult{Offered: cfg.Offered}
	var counter Counter
	var win window
	var (
		mu      sync.Mutex // guards bots and the counts in res
		bots    []*gameBot
		wg      sync.WaitGroup
		joined  atomic.Int64
		pending sync.WaitGroup
		// how long joins took to be answered, by answer
		joinedIn, refusedIn samples
	)
	tk := time.NewTicker(time.Second / time.Duration(cfg.JoinRate))
	defer tk.Stop()
	progressDone := ticker(ctx, time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		cfg.Progress(fmt.Sprintf("overload: %d in, %d refused, %d failed of %d offered", joined.Load(), res.Refused, res.Failed, cfg.Offered))
	})
	for i := range cfg.Offered {
		select {
		case <-ctx.Done():
			progressDone()
			return nil, ctx.Err()
		case <-tk.C:
		}
		pending.Add(1)
		go func() {
			defer pending.Done()
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			url, name := t.WSURL(wire.PathPlay), fmt.Sprintf("o-%d", i+1)
			probe := i%cfg.ProbeEvery == 0
			asked := time.Now()
			var b *bot
			var err error
			if probe {
				b, err = dialBot(dctx, url, name, wire.RoomAuto, &counter, false)
			} else {
				b, err = dialBatchBot(dctx, url, name, wire.RoomAuto, &counter, cfg.BatchEvery)
			}
			answered := float64(time.Since(asked)) / 1e6
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && strings.Contains(err.Error(), wire.CodeOverloaded):
				refusedIn.add(answered)
				if res.Refused == 0 && res.Failed == 0 {
					res.FirstRef = int(joined.Load())
				}
				res.Refused++
			case err != nil:
				res.Failed++
				if res.FailedWhy == nil {
					res.FailedWhy = map[string]int{}
				}
				res.FailedWhy[failureReason(err)]++
			default:
				joinedIn.add(answered)
				joined.Add(1)
				gb := &gameBot{b: b, done: make(chan error, 1), probe: probe}
				if probe {
					b.timeInputs()
				}
				bots = append(bots, gb)
				wg.Add(1)
				go func() {
					defer wg.Done()
					gb.done <- b.read(func(at, rx time.Time, f []byte) { gb.frame(&win, at, rx, f, false) })
				}()
			}
		}()
	}
	pending.Wait()
	progressDone()
	res.JoinedIn, res.RefusedIn = joinedIn.dist(), refusedIn.dist()
	defer func() {
		for _, gb := range bots {
			gb.b.close()
		}
		wg.Wait()
	}()
	if len(bots) == 0 {
		return nil, errors.New("overload: no player got in")
	}
	res.Joined = len(bots)
	res.Hz, res.InputHz = bots[0].b.welcome.Hz, cfg.InputHz

	// Inputs from every player in play, as in `bench game`.
	sendCtx, stopSend := context.WithCancel(ctx)
	var sent atomic.Int64
	var swg sync.WaitGroup
	plays := bots // every player who got in
	senders := min(len(plays), 64)
	for g := range senders {
		swg.Add(1)
		go func() { defer swg.Done(); sendInputs(sendCtx, plays, g, senders, cfg.InputHz, &win, &sent) }()
	}
	defer func() { stopSend(); swg.Wait() }()

	// The window: everyone who got in plays.
	u0, haveUsage := t.Usage()
	self0, _ := ReadUsage(os.Getpid())
	start := time.Now()
	win.start.Store(start.UnixNano())
	if !sleepCtx(ctx, cfg.Duration) {
		return nil, ctx.Err()
	}
	stop := time.Now()
	win.end.Store(stop.UnixNano())
	u1, _ := t.Usage()
	self1, _ := ReadUsage(os.Getpid())
	res.LoadCPUPct = CPUPercent(self0, self1)
	if haveUsage {
		c := CPUPercent(u0, u1)
		res.ServerCPUPct = &c
	}

	// Snapshots per player against the ticks its room ran in the window.
	roomTicks := map[string]map[uint64]struct{}{}
	for _, gb := range plays {
		set := roomTicks[gb.b.welcome.Room]
		if set == nil {
			set = map[uint64]struct{}{}
			roomTicks[gb.b.welcome.Room] = set
		}
		gb.mu.Lock() // the players in play are still reading
		for _, n := range gb.ticks {
			set[n] = struct{}{}
		}
		gb.mu.Unlock()
	}
	var pcts []float64
	var lat, gap, input []samples
	for _, gb := range plays {
		gb.mu.Lock()
		if gb.dropped(stop) {
			res.Dropped++
		}
		if n := len(roomTicks[gb.b.welcome.Room]); n > 0 {
			pcts = append(pcts, 100*float64(gb.snaps)/float64(n))
		} else {
			pcts = append(pcts, 0)
		}
		if gb.probe {
			res.Probes++
			lat = append(lat, slices.Clone(gb.lat))
			gap = append(gap, slices.Clone(gb.gap))
			input = append(input, slices.Clone(gb.inputLat))
		}
		gb.mu.Unlock()
	}
	var sum float64
	for _, p := range pcts {
		sum += p
	}
	res.DeliveredPct = round3(sum / float64(len(pcts)))
	res.WorstDeliveredPct = round3(slices.Min(pcts))
	res.Latency = merge(lat...).dist()
	res.Gap = merge(gap...).dist()
	res.InputDelay = merge(input...).dist()

	// Recovery: half the players leave; how long until a join is taken.
	stopSend()
	swg.Wait()
	for _, gb := range bots[:len(bots)/2] {
		gb.b.close()
	}
	left := time.Now()
	res.RecoverSec = -1
	for time.Since(left) < 30*time.Second {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := dialBot(dctx, t.WSURL(wire.PathPlay), "probe", wire.RoomAuto, &counter, false)
		cancel()
		if err == nil {
			b.close()
			res.RecoverSec = round3(time.Since(left).Seconds())
			break
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	return res, nil
}

// failureReason names why a join failed, in a few words.
func failureReason(err error) string {
	msg := err.Error()
	stage := "in the WebSocket handshake"
	if strings.HasPrefix(msg, "join ") {
		stage = "waiting for the answer to join"
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "timeout"):
		return "timed out " + stage
	case errors.Is(err, websocket.ErrBadHandshake):
		return "handshake refused (HTTP status)"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "reset by peer"):
		return "connection reset"
	case strings.Contains(msg, "EOF"):
		return "closed by the server"
	}
	if _, after, ok := strings.Cut(msg, ": "); ok {
		return after
	}
	return msg
}

// OverloadTable shows runs of `bench overload`, medians first.
func OverloadTable(runs []*OverloadResult) *Table {
	r0 := runs[0]
	t := &Table{Title: fmt.Sprintf("bench overload: %d players offered at %d Hz, inputs %d/s, %d run(s)", r0.Offered, r0.Hz, r0.InputHz, len(runs))}
	add := func(name, unit string, f func(*OverloadResult) float64) {
		vals := make([]float64, len(runs))
		for i, r := range runs {
			vals[i] = f(r)
		}
		t.Rows = append(t.Rows, row(name, unit, vals, nil))
	}
	add("players in", "", func(r *OverloadResult) float64 { return float64(r.Joined) })
	add("refused: overloaded (1013)", "", func(r *OverloadResult) float64 { return float64(r.Refused) })
	add("refused otherwise or timed out", "", func(r *OverloadResult) float64 { return float64(r.Failed) })
	add("players in at the first refusal", "", func(r *OverloadResult) float64 { return float64(r.FirstRef) })
	add("join answered: welcome p99", "ms", func(r *OverloadResult) float64 { return r.JoinedIn.P99 })
	add("join answered: overloaded p50", "ms", func(r *OverloadResult) float64 { return r.RefusedIn.P50 })
	add("join answered: overloaded p99", "ms", func(r *OverloadResult) float64 { return r.RefusedIn.P99 })
	add("snapshots delivered, mean player", "%", func(r *OverloadResult) float64 { return r.DeliveredPct })
	add("snapshots delivered, worst player", "%", func(r *OverloadResult) float64 { return r.WorstDeliveredPct })
	add("probes (players reading every frame at once)", "", func(r *OverloadResult) float64 { return float64(r.Probes) })
	add("update gap p99, probes", "ms", func(r *OverloadResult) float64 { return r.Gap.P99 })
	add("delivery latency p99, probes", "ms", func(r *OverloadResult) float64 { return r.Latency.P99 })
	add("input applied and acknowledged p99, probes", "ms", func(r *OverloadResult) float64 { return r.InputDelay.P99 })
	add("players dropped in the window", "", func(r *OverloadResult) float64 { return float64(r.Dropped) })
	add("joins taken again after half left", "s", func(r *OverloadResult) float64 { return r.RecoverSec })
	add("server CPU", "% of a core", func(r *OverloadResult) float64 {
		if r.ServerCPUPct == nil {
			return 0
		}
		return *r.ServerCPUPct
	})
	add("load process CPU", "% of a core", func(r *OverloadResult) float64 { return r.LoadCPUPct })
	for i, r := range runs {
		for _, why := range slices.Sorted(maps.Keys(r.FailedWhy)) {
			t.Notes = append(t.Notes, fmt.Sprintf("run %d: %d failed: %s", i+1, r.FailedWhy[why], why))
		}
	}
	return t
}
