package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/game/shooter"
	"github.com/tickwire/tickwire/internal/flagenv"
	"github.com/tickwire/tickwire/internal/gctune"
	"github.com/tickwire/tickwire/internal/limits"
	"github.com/tickwire/tickwire/lobby"
)

// BuiltinModes returns the modes Tickwire ships: arena (the default) and
// shooter.
func BuiltinModes() []game.Spec { return []game.Spec{arena.Spec(), shooter.Spec()} }

// BuiltinMode returns the built-in mode of that name, or false.
func BuiltinMode(name string) (game.Spec, bool) { return findMode(BuiltinModes(), name) }

// findMode returns the mode of that name among specs, or false.
func findMode(specs []game.Spec, name string) (game.Spec, bool) {
	i := slices.IndexFunc(specs, func(s game.Spec) bool { return s.Name == name })
	if i < 0 {
		return game.Spec{}, false
	}
	return specs[i], true
}

// Main is the whole main of a server that runs a developer's own modes:
//
//	func main() { server.Main(mygame.Spec()) }
//
// It offers the given modes, the first being the default, and the built-in
// ones after them, and takes every flag of `tickwire serve` from the
// command line (a leading "serve" is allowed) and the environment. It
// drains on SIGINT or SIGTERM and exits 0, or prints the error and exits 1
// (2 for bad flags).
func Main(modes ...game.Spec) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	err := Serve(ctx, args, append(modes, BuiltinModes()...)...)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, os.Args[0]+":", err)
		os.Exit(1)
	}
}

// pickModes returns the modes named, in that order, each found in
// available.
func pickModes(available []game.Spec, names []string) ([]game.Spec, error) {
	var picked []game.Spec
	for _, name := range names {
		m, found := findMode(available, name)
		picked = append(picked, m)
		if !found {
			var known []string
			for _, m := range available {
				known = append(known, m.Name)
			}
			return nil, fmt.Errorf("unknown mode %q (known: %s)", name, strings.Join(known, ", "))
		}
	}
	if len(picked) == 0 {
		return nil, errors.New("no mode")
	}
	return picked, nil
}

// Serve runs `tickwire serve`: it parses serve's flags from args (every
// flag may also come from TICKWIRE_<FLAG> in the environment), offers the
// given modes (the built-in ones when none are given; -modes picks among
// them, the first it names being the default), prints "listening on URL"
// as its first line on stdout, and serves until ctx ends, then drains and
// returns. A developer's own main may call it, or Main.
func Serve(ctx context.Context, args []string, modes ...game.Spec) error {
	if len(modes) == 0 {
		modes = BuiltinModes()
	}
	o, err := parseServe(args, modes, nil)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.level}))
	slog.SetDefault(logger)
	if os.Getenv("GOGC") == "" {
		// Go's default of 100 lets the heap double between collections.
		// A game server allocates little per tick, so collecting more
		// often costs no measurable CPU and saves about a quarter of the
		// memory per player (BENCHMARKS.md). Traffic that allocates much
		// more (WebRTC state channels) has GOGC raised while the
		// collector's share of the CPU is over -gc-cpu.
		debug.SetGCPercent(o.gcPercent)
		if o.gcCPU > 0 {
			tuneCtx, stopTuning := context.WithCancel(ctx)
			tuned := make(chan struct{})
			go func() {
				defer close(tuned)
				gctune.Run(tuneCtx, gctune.Config{Floor: o.gcPercent, Ceiling: o.gcPercentMax, Target: o.gcCPU / 100, Logger: logger})
			}()
			defer func() { stopTuning(); <-tuned }()
		}
	}
	o.cfg.Logger = logger
	srv, err := Open(o.cfg)
	if err != nil {
		return err
	}
	ln, err := srv.Listen()
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	fmt.Printf("listening on %s://%s\n", srv.Scheme(), ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String(), "hz", o.cfg.Hz, "modes", o.modeList)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// serveOptions are serve's settings: the server's Config and the
// process's own.
type serveOptions struct {
	cfg          Config
	gcPercent    int     // GOGC, the floor of the tuner
	gcPercentMax int     // the tuner's ceiling
	gcCPU        float64 // the collector's share of the CPU the tuner aims at, in %; 0: GOGC stays at gcPercent
	level        slog.Level
	modeList     string
}

// parseServe parses serve's flags from args and the environment; usage
// and errors go to out (nil: stderr).
func parseServe(args []string, modes []game.Spec, out io.Writer) (serveOptions, error) {
	var names []string
	for _, m := range modes {
		names = append(names, m.Name)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if out != nil {
		fs.SetOutput(out)
	}
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (:0 picks a free port)")
	hz := fs.Int("hz", 30, "room tick rate")
	spectateHz := fs.Int("spectate-hz", 10, "snapshots per second of spectator feeds, at most (0: every tick)")
	maxPlayers := fs.Int("max-players", 16, "seats of a matchmade room, 1-64 (0: no limit, the most a room may have: 64)")
	authSecret := fs.String("auth-secret", "", "HS256 secret for JWTs (empty: guests allowed)")
	origins := fs.String("origins", "", "comma-separated allowed browser origins (default: same host only)")
	natsURL := fs.String("nats", "", "NATS URL (empty: single node)")
	publicURL := fs.String("public-url", "", "base URL clients reach this node at, given to other nodes' clients (default: http(s)://ADDR as listened on)")
	stun := fs.String("stun", "", "comma-separated STUN URLs")
	turn := fs.String("turn", "", "comma-separated TURN URLs")
	turnSecret := fs.String("turn-secret", "", "TURN REST shared secret")
	roomIdle := fs.Duration("room-idle", 30*time.Second, "an empty room ends after this")
	grace := fs.Duration("grace", 15*time.Second, "seat held after an unexpected disconnect")
	drain := fs.Duration("drain", 2*time.Second, "refuse new joins this long before closing on SIGTERM")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (with -tls-key: https and wss)")
	tlsKey := fs.String("tls-key", "", "TLS private key file")
	// Limits: 0 lifts a limit (NoLimit in Config), as each help says.
	readLimit := fs.Int64("read-limit", 4096, "largest player frame in bytes, over it close 1009 (0: no limit)")
	maxConns := fs.Int("max-conns", 10000, "open WebSockets, SSE streams and polls in total, over it 503 (0: no limit)")
	maxConnsPerIP := fs.Int("max-conns-per-ip", 256, "open connections per client address, over it 429; loopback clients exempt (0: no limit)")
	maxRooms := fs.Int("max-rooms", 1000, "rooms open at once (0: no limit)")
	maxSpectators := fs.Int("max-spectators", 5000, "SSE streams and parked polls per room (0: no limit)")
	feedHistoryBytes := fs.Int64("feed-history-bytes", 1<<20, "bytes of events a room's feed keeps for resumes, oldest dropped first (0: no limit but the count, 1024 events)")
	feedBudgetBytes := fs.Int64("feed-budget-bytes", 64<<20, "bytes of events every feed of the node keeps in all, oldest dropped first (0: no limit)")
	feedDelayBytes := fs.Int64("feed-delay-bytes", 256<<20, "bytes the node queues for delayed spectator feeds (?delay=S); beyond, new delays are refused (0: no limit)")
	chatRate := fs.Float64("chat-rate", 5, "chat lines per second per player (0: no limit)")
	chatBurst := fs.Int("chat-burst", 20, "chat lines a player may send at once (0: no limit)")
	msgRate := fs.Float64("msg-rate", 0, "messages per second a player stays under, default 2 x hz; 10x that for 2s closes with 4029 (0: no limit)")
	signalRate := fs.Float64("signal-rate", 50, "relayed signaling messages per second per peer (0: no limit)")
	signalBurst := fs.Int("signal-burst", 200, "relayed signaling messages a peer may send at once (0: no limit)")
	roomRate := fs.Float64("room-rate", 1, "rooms a client may create per second, by POST /api/rooms or an auto join making one; over it 429 (0: no limit)")
	roomBurst := fs.Int("room-burst", 5, "rooms a client may create at once (0: no limit)")
	trustedProxies := fs.String("trusted-proxies", "", "comma-separated CIDRs or addresses of reverse proxies: their requests are attributed to the client named in X-Forwarded-For or Forwarded (default: none, every request is its TCP peer's)")
	record := fs.Bool("record", true, "record every room (unless created with \"record\":false) for replays")
	dataDir := fs.String("data-dir", "./data", "directory of the recordings")
	replayKeep := fs.Duration("replay-keep", 24*time.Hour, "how long a recording is kept after its room ended")
	replayMaxBytes := fs.Int64("replay-max-bytes", DefaultReplayMaxBytes, "total size of the recordings, the oldest removed first (0: no limit)")
	replayReplicas := fs.Int("replay-replicas", 1, "with -nats: how many JetStream servers keep each recording (1-5; 3 on a NATS cluster survives the loss of one)")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/")
	overloadOn := fs.Bool("overload", true, "refuse new players, rooms and viewers (503, close 1013) while ticks run late, so that the players in play keep their snapshots")
	overloadHold := fs.Duration("overload-hold", 5*time.Second, "an overload lasts at least this long after ticks are on time again; also the retry hint")
	overloadCPU := fs.Float64("overload-cpu", 90, "with -overload: the server also counts as overloaded while it uses more than this % of the CPU available to it (GOMAXPROCS cores), keeping a margin for the joins that arrive meanwhile (0: CPU use is not a signal)")
	gcPercent := fs.Int("gc-percent", 25, "heap growth between garbage collections, in % of the live heap (Go's GOGC; the GOGC variable, when set, wins and turns -gc-cpu off)")
	gcCPU := fs.Float64("gc-cpu", 5, "while the garbage collector takes more than this % of the server's CPU, GOGC rises above -gc-percent, up to -gc-percent-max (0: GOGC stays at -gc-percent)")
	gcPercentMax := fs.Int("gc-percent-max", 400, "the highest GOGC that -gc-cpu sets")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	rtcOn := fs.Bool("rtc", true, "take state over WebRTC DataChannels (rtc-offer on /ws/play); false answers offers with unsupported")
	rtcUDP := fs.String("rtc-udp", "", "the one UDP address of every player's WebRTC peer connection (default: -addr's host and port, over UDP)")
	rtcMaxFrame := fs.Int("rtc-max-frame", 0, "largest state frame sent on a player's WebRTC channel, in bytes, larger ones going on the WebSocket; 1100 keeps keyframes of big rooms, which a lossy path loses whole when one of their SCTP chunks is lost, on the WebSocket (0: no limit, every state frame on the channel, as the protocol says)")
	rtcPublicIP := fs.String("rtc-public-ip", "", "comma-separated addresses announced in WebRTC candidates instead of the machine's, behind 1:1 NAT")
	modeList := fs.String("modes", strings.Join(names, ","), "comma-separated game modes rooms may run, the default first")
	if err := flagenv.ParseWithEnv(fs, args); err != nil {
		return serveOptions{}, err
	}
	if *replayKeep <= 0 {
		return serveOptions{}, fmt.Errorf("-replay-keep %v: above 0", *replayKeep)
	}
	if *replayReplicas < 1 || *replayReplicas > 5 {
		return serveOptions{}, fmt.Errorf("-replay-replicas %d: 1 to 5", *replayReplicas)
	}
	if *record && *dataDir == "" {
		return serveOptions{}, fmt.Errorf("-data-dir: empty (use -record=false not to record)")
	}
	if !*record {
		*dataDir = ""
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return serveOptions{}, fmt.Errorf("-tls-cert and -tls-key go together")
	}
	offered, err := pickModes(modes, flagenv.SplitList(*modeList))
	if err != nil {
		return serveOptions{}, fmt.Errorf("-modes: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return serveOptions{}, fmt.Errorf("-log-level: %w", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var bad []error
	if *hz < 1 {
		bad = append(bad, fmt.Errorf("-hz %d: at least 1", *hz))
	}
	if *maxPlayers > lobby.MaxRoomSeats {
		bad = append(bad, fmt.Errorf("-max-players %d: at most %d", *maxPlayers, lobby.MaxRoomSeats))
	}
	if given["msg-rate"] {
		*msgRate = zeroIsNone(&bad, "msg-rate", *msgRate)
	} // else 0: Config's default, 2 x hz
	cfg := Config{Modes: offered,
		Addr: *addr, Hz: *hz, SpectateHz: zeroIsNone(&bad, "spectate-hz", *spectateHz),
		MaxPlayers: zeroIsNone(&bad, "max-players", *maxPlayers),
		AuthSecret: *authSecret, Origins: flagenv.SplitList(*origins), NATS: *natsURL, PublicURL: *publicURL,
		STUN: flagenv.SplitList(*stun), TURN: flagenv.SplitList(*turn), TURNSecret: *turnSecret,
		TLSCert: *tlsCert, TLSKey: *tlsKey, ReadLimit: zeroIsNone(&bad, "read-limit", *readLimit),
		MaxConns:         zeroIsNone(&bad, "max-conns", *maxConns),
		MaxConnsPerIP:    zeroIsNone(&bad, "max-conns-per-ip", *maxConnsPerIP),
		MaxRooms:         zeroIsNone(&bad, "max-rooms", *maxRooms),
		MaxSpectators:    zeroIsNone(&bad, "max-spectators", *maxSpectators),
		FeedHistoryBytes: noByteCap(zeroIsNone(&bad, "feed-history-bytes", *feedHistoryBytes)),
		FeedBudgetBytes:  noByteCap(zeroIsNone(&bad, "feed-budget-bytes", *feedBudgetBytes)),
		FeedDelayBytes:   zeroIsNone(&bad, "feed-delay-bytes", *feedDelayBytes), // no cap: see Server.New
		ChatRate:         zeroIsNone(&bad, "chat-rate", *chatRate),
		ChatBurst:        zeroIsNone(&bad, "chat-burst", *chatBurst),
		MessageRate:      *msgRate,
		SignalRate:       zeroIsNone(&bad, "signal-rate", *signalRate),
		SignalBurst:      zeroIsNone(&bad, "signal-burst", *signalBurst),
		RoomRate:         zeroIsNone(&bad, "room-rate", *roomRate),
		RoomBurst:        zeroIsNone(&bad, "room-burst", *roomBurst),
		Pprof:            *pprofOn, NoOverload: !*overloadOn, OverloadHold: *overloadHold, OverloadCPU: overloadCPUShare(&bad, *overloadCPU),
		TrustedProxies: flagenv.SplitList(*trustedProxies),
		RoomIdle:       *roomIdle, Grace: *grace, Drain: *drain,
		NoRTC: !*rtcOn, RTCUDP: *rtcUDP, RTCPublicIPs: flagenv.SplitList(*rtcPublicIP),
		RTCMaxFrame: zeroIsNone(&bad, "rtc-max-frame", *rtcMaxFrame),
		DataDir:     *dataDir, ReplayKeep: *replayKeep, ReplayMaxBytes: zeroIsNone(&bad, "replay-max-bytes", *replayMaxBytes),
		ReplayReplicas: *replayReplicas,
	}
	for _, ip := range cfg.RTCPublicIPs {
		if net.ParseIP(ip) == nil {
			bad = append(bad, fmt.Errorf("-rtc-public-ip %q: not an IP address", ip))
		}
	}
	if cfg.RTCUDP != "" {
		if _, err := net.ResolveUDPAddr("udp", cfg.RTCUDP); err != nil {
			bad = append(bad, fmt.Errorf("-rtc-udp %q: %v", cfg.RTCUDP, err))
		}
	}
	if err := errors.Join(bad...); err != nil {
		return serveOptions{}, err
	}
	if _, err := limits.ParseProxies(cfg.TrustedProxies); err != nil {
		return serveOptions{}, fmt.Errorf("-trusted-proxies: %w", err)
	}
	if *gcPercent <= 0 || *gcPercentMax < *gcPercent || *gcCPU < 0 || *gcCPU >= 100 {
		return serveOptions{}, fmt.Errorf("-gc-percent %d, -gc-percent-max %d, -gc-cpu %v: want 0 < gc-percent <= gc-percent-max and 0 <= gc-cpu < 100", *gcPercent, *gcPercentMax, *gcCPU)
	}
	return serveOptions{cfg: cfg, gcPercent: *gcPercent, gcPercentMax: *gcPercentMax, gcCPU: *gcCPU, level: level, modeList: *modeList}, nil
}

// overloadCPUShare turns -overload-cpu's % into Config.OverloadCPU's
// share: 0 (not a signal) becomes negative; a value outside 0..100 is an
// error, added to bad.
func overloadCPUShare(bad *[]error, pct float64) float64 {
	switch {
	case pct < 0 || pct > 100:
		*bad = append(*bad, fmt.Errorf("-overload-cpu %v: want 0 (not a signal) to 100", pct))
	case pct == 0:
		return -1
	}
	return pct / 100
}

// zeroIsNone turns a limit flag's value into Config's: 0 (no limit)
// becomes NoLimit; a negative value is an error, added to bad.
func zeroIsNone[T int | int64 | float64](bad *[]error, name string, v T) T {
	switch {
	case v < 0:
		*bad = append(*bad, fmt.Errorf("-%s %v: below 0 (0 lifts the limit)", name, v))
	case v == 0:
		return NoLimit
	}
	return v
}

// noByteCap turns NoLimit for a size in bytes into a size no feed reaches.
func noByteCap(v int64) int64 {
	if v < 0 {
		return math.MaxInt64 / 4
	}
	return v
}
