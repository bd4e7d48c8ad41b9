package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/arena"
	"github.com/tickwire/tickwire/game/shooter"
	"github.com/tickwire/tickwire/internal/flagenv"
)

// BuiltinModes returns the modes Tickwire ships: arena (the default) and
// shooter.
func BuiltinModes() []game.Spec { return []game.Spec{arena.Spec(), shooter.Spec()} }

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
		found := false
		for _, m := range available {
			if m.Name == name {
				picked = append(picked, m)
				found = true
				break
			}
		}
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
	var names []string
	for _, m := range modes {
		names = append(names, m.Name)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (:0 picks a free port)")
	hz := fs.Int("hz", 30, "room tick rate")
	spectateHz := fs.Int("spectate-hz", 10, "snapshot rate of spectator feeds")
	maxPlayers := fs.Int("max-players", 16, "seats of a matchmade room")
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
	readLimit := fs.Int64("read-limit", 4096, "largest player frame in bytes (over it: close 1009)")
	maxConns := fs.Int("max-conns", 10000, "open WebSockets, SSE streams and polls in total (0: no cap)")
	maxConnsPerIP := fs.Int("max-conns-per-ip", 256, "open connections per client IP, loopback exempt (0: no cap)")
	maxRooms := fs.Int("max-rooms", 1000, "rooms open at once")
	maxSpectators := fs.Int("max-spectators", 5000, "SSE streams and parked polls per room")
	chatRate := fs.Float64("chat-rate", 5, "chat lines per second per player")
	chatBurst := fs.Int("chat-burst", 20, "chat lines a player may send at once")
	msgRate := fs.Float64("msg-rate", 0, "messages per second a player stays under (default 2 x hz); 10x that for 2s closes with 4029")
	signalRate := fs.Float64("signal-rate", 50, "relayed signaling messages per second per peer")
	signalBurst := fs.Int("signal-burst", 200, "relayed signaling messages a peer may send at once")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/")
	gcPercent := fs.Int("gc-percent", 25, "heap growth between garbage collections, in % of the live heap (Go's GOGC; the GOGC variable, when set, wins)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	modeList := fs.String("modes", strings.Join(names, ","), "comma-separated game modes rooms may run, the default first")
	if err := flagenv.ParseWithEnv(fs, args); err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("-tls-cert and -tls-key go together")
	}
	offered, err := pickModes(modes, flagenv.SplitList(*modeList))
	if err != nil {
		return fmt.Errorf("-modes: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	if os.Getenv("GOGC") == "" {
		// Go's default of 100 lets the heap double between collections.
		// A game server allocates little per tick, so collecting more
		// often costs no measurable CPU and saves about a quarter of the
		// memory per player (BENCHMARKS.md).
		debug.SetGCPercent(*gcPercent)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	srv, err := Open(Config{Modes: offered,
		Addr: *addr, Hz: *hz, SpectateHz: *spectateHz, MaxPlayers: *maxPlayers,
		AuthSecret: *authSecret, Origins: flagenv.SplitList(*origins), NATS: *natsURL, PublicURL: *publicURL,
		STUN: flagenv.SplitList(*stun), TURN: flagenv.SplitList(*turn), TURNSecret: *turnSecret,
		TLSCert: *tlsCert, TLSKey: *tlsKey, ReadLimit: *readLimit,
		MaxConns: *maxConns, MaxConnsPerIP: *maxConnsPerIP, MaxRooms: *maxRooms, MaxSpectators: *maxSpectators,
		ChatRate: *chatRate, ChatBurst: *chatBurst, MessageRate: *msgRate,
		SignalRate: *signalRate, SignalBurst: *signalBurst, Pprof: *pprofOn,
		RoomIdle: *roomIdle, Grace: *grace, Drain: *drain, Logger: logger,
	})
	if err != nil {
		return err
	}
	ln, err := srv.Listen()
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return err
	}
	fmt.Printf("listening on %s://%s\n", srv.Scheme(), ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String(), "hz", *hz, "modes", *modeList)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
