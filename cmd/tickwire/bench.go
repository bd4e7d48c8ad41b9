package main

import (
	"github.com/tickwire/tickwire/internal/flagenv"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/bench"
	"github.com/tickwire/tickwire/server"
)

const benchUsage = `usage: tickwire bench <game|feeds|transports|signaling|overload|all> [flags]

Loads a Tickwire server on 127.0.0.1 and prints a table of the results
(medians of -runs runs; -json for JSON). By default each run starts its own
server, "tickwire serve", as a child process and reads its CPU and memory
from /proc; -server targets a running server instead.

`

// benchFlags are the flags of every benchmark.
type benchFlags struct {
	server, serveArgs             string
	pid, runs, hz                 int
	pin, inProcess, asJSON, quiet bool
	cpuProfile, memProfile, trace string
	serverPprof                   string

	players, roomSize, inputHz int
	delta, rtc, rtcWSInputs    bool
	mode                       string
	duration, warmup           time.Duration

	viewers, feedRooms, feedBots int
	feedDuration                 time.Duration
	viewersAt                    string

	messages, idle int
	browser        bool

	pairs int

	offered, joinRate int
}

func runBench(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, benchUsage)
		return flag.ErrHelp
	}
	which := args[0]
	var f benchFlags
	fs := flag.NewFlagSet("bench "+which, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.server, "server", "", "URL of a running server to load (default: start a child server per run)")
	fs.IntVar(&f.pid, "pid", 0, "with -server: the server's process id, to read its CPU and memory from /proc")
	fs.StringVar(&f.serveArgs, "serve-args", "", "more flags for the child `tickwire serve`, space-separated")
	fs.IntVar(&f.runs, "runs", 3, "runs of each benchmark; the table shows medians")
	fs.IntVar(&f.hz, "hz", 20, "tick rate of the child server")
	fs.BoolVar(&f.pin, "pin", false, "pin the child server to CPU 0 and this process to CPU 1 (taskset)")
	fs.BoolVar(&f.inProcess, "inprocess", false, "run the server inside this process (tick durations from the rooms; no CPU or RSS figures)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON instead of a table")
	fs.BoolVar(&f.quiet, "q", false, "no progress line on stderr")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (with -inprocess, server goroutines carry the label side=server)")
	fs.StringVar(&f.memProfile, "memprofile", "", "write an allocation profile of this process at the end")
	fs.StringVar(&f.serverPprof, "server-pprof", "", "game: save the child server's CPU profile of the window and its allocations during it (-base allocs-begin) in this directory")
	fs.StringVar(&f.trace, "trace", "", "write an execution trace of this process (runtime/trace)")
	fs.IntVar(&f.players, "n", 1000, "game: players (bots)")
	fs.IntVar(&f.roomSize, "room-size", 16, "game: seats per room")
	fs.IntVar(&f.inputHz, "input-hz", 0, "game: inputs per second per bot (default: the tick rate); overload: of each player in play (default 20)")
	fs.BoolVar(&f.delta, "delta", false, "game: the bots ask for delta snapshots")
	fs.BoolVar(&f.rtc, "rtc", false, "game: the bots take their state over WebRTC DataChannels and send inputs there (the UDP and DTLS overhead is not in the byte counts)")
	fs.BoolVar(&f.rtcWSInputs, "rtc-ws-inputs", false, "game, with -rtc: the bots send their inputs on the WebSocket, and the channel carries state only")
	fs.StringVar(&f.mode, "mode", "", "game: the game mode of the rooms (default: the server's default); the bots play it blind")
	fs.DurationVar(&f.duration, "duration", 20*time.Second, "game: measured window of each run")
	fs.DurationVar(&f.warmup, "warmup", 5*time.Second, "game and feeds: warm-up before the window")
	fs.IntVar(&f.viewers, "k", 1000, "feeds: SSE viewers, and as many long-poll viewers")
	fs.IntVar(&f.feedRooms, "feed-rooms", 8, "feeds: rooms watched")
	fs.IntVar(&f.feedBots, "feed-bots", 8, "feeds: moving and chatting bots per room")
	fs.DurationVar(&f.feedDuration, "feed-duration", 10*time.Second, "feeds: measured window of each run")
	fs.StringVar(&f.viewersAt, "viewers-at", "", "feeds: comma-separated URLs of the nodes the viewers connect to, in turn (other nodes of -server's cluster; default: the server)")
	fs.IntVar(&f.messages, "messages", 100, "transports: chat lines delivered over each transport")
	fs.IntVar(&f.idle, "idle", 1000, "transports: idle connections of each kind for the memory figure")
	fs.BoolVar(&f.browser, "browser-headers", false, "transports: send the request headers a browser sends (User-Agent, Accept-*, Sec-Fetch-*, ...)")
	fs.IntVar(&f.pairs, "pairs", 50, "signaling: peer pairs connecting at once")
	fs.IntVar(&f.offered, "offered", 2000, "overload: players that try to join (offer more than the server carries at -hz)")
	fs.IntVar(&f.joinRate, "join-rate", 100, "overload: joins tried per second")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if f.runs < 1 {
		return errors.New("bench: -runs must be at least 1")
	}
	names := []string{which}
	if which == "all" {
		names = []string{"game", "feeds", "transports", "signaling"}
	}
	for _, n := range names {
		if _, ok := benchmarks[n]; !ok {
			fmt.Fprint(os.Stderr, benchUsage)
			return fmt.Errorf("bench: unknown benchmark %q", n)
		}
	}
	if f.pin {
		if f.server != "" || f.inProcess {
			return errors.New("bench: -pin starts the server itself; it does not go with -server or -inprocess")
		}
		if pinned, err := pinSelf(args); !pinned {
			return err
		}
	}
	if f.cpuProfile != "" {
		out, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if f.trace != "" {
		out, err := os.Create(f.trace)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := trace.Start(out); err != nil {
			return err
		}
		defer trace.Stop()
	}
	if os.Getenv("GOGC") == "" {
		// The load process stands for clients on other machines: its own
		// collections should add as little as possible to what it
		// measures (memory is plentiful here).
		debug.SetGCPercent(400)
	}
	r := &benchRunner{f: f, progress: newProgress(os.Stderr, f.quiet)}
	defer r.progress.clear()
	var tables []*bench.Table
	var out []any
	for _, n := range names {
		t, detail, err := benchmarks[n](r, ctx)
		if err != nil {
			return fmt.Errorf("bench %s: %w", n, err)
		}
		tables = append(tables, t)
		out = append(out, map[string]any{"benchmark": n, "table": t, "runs": detail})
	}
	r.progress.clear()
	if f.memProfile != "" {
		if err := writeHeapProfile(f.memProfile); err != nil {
			return err
		}
	}
	if f.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if len(out) == 1 {
			return enc.Encode(out[0])
		}
		return enc.Encode(out)
	}
	for _, t := range tables {
		t.Write(os.Stdout)
	}
	return nil
}

func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	return pprof.Lookup("allocs").WriteTo(out, 0)
}

// pinnedEnv marks a bench process already running under taskset.
const pinnedEnv = "TICKWIRE_BENCH_PINNED"

// pinSelf re-runs this command on CPU 1 under taskset. It returns true in
// the pinned process, and never returns on success otherwise.
func pinSelf(args []string) (bool, error) {
	if os.Getenv(pinnedEnv) == "1" {
		return true, nil
	}
	if runtime.NumCPU() < 2 {
		return false, errors.New("bench: -pin needs at least 2 CPUs")
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return false, fmt.Errorf("bench: -pin needs taskset (util-linux): %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return false, err
	}
	argv := append([]string{"taskset", "-c", "1", exe, "bench"}, args...)
	return false, syscall.Exec(ts, argv, append(os.Environ(), pinnedEnv+"=1"))
}

// benchmarks runs one benchmark: its table and the details of its runs.
var benchmarks = map[string]func(*benchRunner, context.Context) (*bench.Table, any, error){
	"game":       (*benchRunner).game,
	"feeds":      (*benchRunner).feeds,
	"transports": (*benchRunner).transports,
	"signaling":  (*benchRunner).signaling,
	"overload":   (*benchRunner).overload,
}

// overload offers more players than the server carries and shows how it
// refuses the surplus (`all` leaves it out: it saturates the server).
func (r *benchRunner) overload(ctx context.Context) (*bench.Table, any, error) {
	var runs []*bench.OverloadResult
	for i := range r.f.runs {
		t, stop, err := r.target(ctx, "-room-rate", "0", "-max-conns-per-ip", "0")
		if err != nil {
			return nil, nil, err
		}
		res, err := bench.RunOverload(ctx, t, bench.OverloadConfig{
			Offered: r.f.offered, JoinRate: r.f.joinRate, Duration: r.f.duration, InputHz: r.f.inputHz,
			Progress: r.progress.prefix(fmt.Sprintf("run %d/%d ", i+1, r.f.runs)),
		})
		stop()
		if err != nil {
			return nil, nil, err
		}
		runs = append(runs, res)
	}
	t := bench.OverloadTable(runs)
	if r.f.pin {
		t.Notes = append(t.Notes, "server pinned to CPU 0, players to CPU 1")
	}
	return t, runs, nil
}

// benchRunner runs benchmarks with the parsed flags.
type benchRunner struct {
	f        benchFlags
	progress *progress
}

// target starts the server of one run (or returns the given one) and a
// function that stops it.
func (r *benchRunner) target(ctx context.Context, args ...string) (*bench.Target, func(), error) {
	if r.f.server != "" {
		return bench.Remote(r.f.server, r.f.pid), func() {}, nil
	}
	if r.f.inProcess {
		p, err := bench.StartInProcess(server.Config{Hz: r.f.hz})
		if err != nil {
			return nil, nil, err
		}
		return p.Target, func() { _ = p.Close() }, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cpu := -1
	if r.f.pin {
		cpu = 0
	}
	args = append(args, strings.Fields(r.f.serveArgs)...)
	t, err := bench.StartServer(ctx, bench.ServerOptions{Exe: exe, Hz: r.f.hz, Args: append([]string{"-drain", "0s"}, args...), CPU: cpu, Stderr: os.Stderr})
	if err != nil {
		return nil, nil, err
	}
	return t, func() { _ = t.Close() }, nil
}

func (r *benchRunner) game(ctx context.Context) (*bench.Table, any, error) {
	var runs []*bench.GameResult
	for i := range r.f.runs {
		cfg := bench.GameConfig{
			Players: r.f.players, RoomSize: r.f.roomSize, InputHz: r.f.inputHz,
			Duration: r.f.duration, Warmup: r.f.warmup, Delta: r.f.delta, RTC: r.f.rtc, RTCInputsOnWebSocket: r.f.rtcWSInputs, Mode: r.f.mode,
			Progress: r.progress.prefix(fmt.Sprintf("run %d/%d ", i+1, r.f.runs)),
		}
		if spec, ok := server.BuiltinMode(r.f.mode); ok {
			cfg.Bot = spec.NewBot
		}
		var res *bench.GameResult
		var err error
		if r.f.inProcess && r.f.server == "" {
			p, perr := bench.StartInProcess(server.Config{Hz: r.f.hz})
			if perr != nil {
				return nil, nil, perr
			}
			cfg.Ticks = &bench.RoomProbe{Server: p.Server}
			res, err = bench.RunGame(ctx, p.Target, cfg)
			_ = p.Close()
		} else {
			var extra []string
			if r.f.serverPprof != "" {
				extra = append(extra, "-pprof")
			}
			t, stop, terr := r.target(ctx, extra...)
			if terr != nil {
				return nil, nil, terr
			}
			cfg.Ticks = &bench.MetricsProbe{URL: t.URL}
			if r.f.serverPprof != "" {
				cfg.OnWindow = serverProfiler(t.URL, r.f.serverPprof, fmt.Sprintf("run%d-", i+1), r.f.duration)
			}
			res, err = bench.RunGame(ctx, t, cfg)
			stop()
		}
		if err != nil {
			return nil, nil, err
		}
		runs = append(runs, res)
	}
	reference := r.f.players == 1000 && r.f.roomSize == 16 && runs[0].Hz == 20 && runs[0].InputHz == 20
	t := bench.GameTable(runs, reference)
	if r.f.pin {
		t.Notes = append(t.Notes, "server pinned to CPU 0, bots to CPU 1")
	}
	if !reference {
		t.Notes = append(t.Notes, "targets are judged only for the reference workload (-n 1000 -room-size 16 -hz 20)")
	}
	return t, runs, nil
}

func (r *benchRunner) feeds(ctx context.Context) (*bench.Table, any, error) {
	byKind := map[string][]*bench.FeedsResult{}
	for i := range r.f.runs {
		for _, kind := range []string{spectator.SSE, spectator.Poll} {
			t, stop, err := r.target(ctx)
			if err != nil {
				return nil, nil, err
			}
			res, err := bench.RunFeeds(ctx, t, bench.FeedsConfig{
				Transport: kind, Viewers: r.f.viewers, Rooms: r.f.feedRooms, BotsPerRoom: r.f.feedBots,
				ViewerServers: flagenv.SplitList(r.f.viewersAt),
				Duration:      r.f.feedDuration, Warmup: min(r.f.warmup, 2*time.Second),
				Progress: r.progress.prefix(fmt.Sprintf("run %d/%d ", i+1, r.f.runs)),
			})
			stop()
			if err != nil {
				return nil, nil, err
			}
			byKind[kind] = append(byKind[kind], res)
		}
	}
	return bench.FeedsTable(byKind), byKind, nil
}

// browserHeaders are what Chromium sends with a same-origin request, less
// cookies: the weight a browser adds to every long-poll.
var browserHeaders = http.Header{
	"User-Agent":         {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	"Accept":             {"*/*"},
	"Accept-Language":    {"en-US,en;q=0.9"},
	"Referer":            {"http://127.0.0.1/?watch=room"},
	"Sec-Ch-Ua":          {`"Chromium";v="131", "Not_A Brand";v="24"`},
	"Sec-Ch-Ua-Mobile":   {"?0"},
	"Sec-Ch-Ua-Platform": {`"Linux"`},
	"Sec-Fetch-Dest":     {"empty"},
	"Sec-Fetch-Mode":     {"cors"},
	"Sec-Fetch-Site":     {"same-origin"},
}

func (r *benchRunner) transports(ctx context.Context) (*bench.Table, any, error) {
	var header http.Header
	headers := "Go client request headers"
	if r.f.browser {
		header, headers = browserHeaders, "browser-like request headers (-browser-headers)"
	}
	var runs []*bench.TransportsResult
	idle := map[string][]*bench.IdleResult{}
	hz := r.f.hz
	r.f.hz = 1 // players' snapshots, which are not among the messages, once a second
	defer func() { r.f.hz = hz }()
	for i := range r.f.runs {
		prog := r.progress.prefix(fmt.Sprintf("run %d/%d ", i+1, r.f.runs))
		t, stop, err := r.target(ctx)
		if err != nil {
			return nil, nil, err
		}
		res, err := bench.RunTransports(ctx, t, bench.TransportsConfig{Messages: r.f.messages, Header: header, Progress: prog})
		stop()
		if err != nil {
			return nil, nil, err
		}
		runs = append(runs, res)
		if r.f.idle <= 0 || r.f.inProcess || r.f.server != "" && r.f.pid == 0 {
			continue
		}
		for _, kind := range []string{"websocket", "sse", "long-poll"} {
			t, stop, err := r.target(ctx)
			if err != nil {
				return nil, nil, err
			}
			ir, err := bench.RunIdle(ctx, t, kind, r.f.idle, prog)
			stop()
			if err != nil {
				return nil, nil, err
			}
			idle[kind] = append(idle[kind], ir)
		}
	}
	t := bench.TransportsTable(runs, idle, headers)
	t.Notes = append(t.Notes, "the server runs at 1 Hz here, so WebSocket players get few snapshots besides the messages (they are left out of the bytes)")
	return t, map[string]any{"messages": runs, "idle": idle}, nil
}

func (r *benchRunner) signaling(ctx context.Context) (*bench.Table, any, error) {
	var runs []*bench.SignalingResult
	for i := range r.f.runs {
		t, stop, err := r.target(ctx)
		if err != nil {
			return nil, nil, err
		}
		res, err := bench.RunSignaling(ctx, t, r.f.pairs, r.progress.prefix(fmt.Sprintf("run %d/%d ", i+1, r.f.runs)))
		stop()
		if err != nil {
			return nil, nil, err
		}
		runs = append(runs, res)
	}
	return bench.SignalingTable(runs), runs, nil
}

// serverProfiler fetches the child server's profiles during the window:
// allocations at its start and end, and a CPU profile as long as it.
func serverProfiler(server, dir, prefix string, window time.Duration) func(open bool) {
	var cpuDone chan struct{}
	get := func(path, file string) {
		resp, err := http.Get(server + path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "server-pprof:", err)
			return
		}
		defer resp.Body.Close()
		out, err := os.Create(filepath.Join(dir, prefix+file))
		if err != nil {
			fmt.Fprintln(os.Stderr, "server-pprof:", err)
			return
		}
		defer out.Close()
		_, _ = io.Copy(out, resp.Body)
	}
	return func(open bool) {
		if open {
			_ = os.MkdirAll(dir, 0o755)
			get("/debug/pprof/allocs", "allocs-begin.pb.gz")
			cpuDone = make(chan struct{})
			secs := max(1, int(window.Seconds()))
			go func() {
				defer close(cpuDone)
				get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu.pb.gz")
			}()
			return
		}
		get("/debug/pprof/allocs", "allocs-end.pb.gz")
		<-cpuDone
	}
}

// progress is the status line on stderr: rewritten in place on a
// terminal, a line every few seconds otherwise.
type progress struct {
	mu    sync.Mutex // guards the fields below
	w     io.Writer
	tty   bool
	quiet bool
	last  time.Time
	shown bool
}

func newProgress(w *os.File, quiet bool) *progress {
	st, err := w.Stat()
	return &progress{w: w, quiet: quiet, tty: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) show(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		fmt.Fprintln(p.w, line)
		p.last = time.Now()
	}
}

// prefix returns a progress function that prefixes its lines.
func (p *progress) prefix(s string) func(string) {
	return func(line string) { p.show(s + line) }
}

func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
