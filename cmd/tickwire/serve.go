package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tickwire/tickwire/internal/server"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (:0 picks a free port)")
	hz := fs.Int("hz", 30, "room tick rate")
	spectateHz := fs.Int("spectate-hz", 10, "snapshot rate of spectator feeds")
	maxPlayers := fs.Int("max-players", 16, "seats of a matchmade room")
	authSecret := fs.String("auth-secret", "", "HS256 secret for JWTs (empty: guests allowed)")
	origins := fs.String("origins", "", "comma-separated allowed browser origins (default: same host only)")
	natsURL := fs.String("nats", "", "NATS URL (empty: single node)")
	stun := fs.String("stun", "", "comma-separated STUN URLs")
	turn := fs.String("turn", "", "comma-separated TURN URLs")
	turnSecret := fs.String("turn-secret", "", "TURN REST shared secret")
	roomIdle := fs.Duration("room-idle", 30*time.Second, "an empty room ends after this")
	grace := fs.Duration("grace", 15*time.Second, "seat held after an unexpected disconnect")
	drain := fs.Duration("drain", 2*time.Second, "refuse new joins this long before closing on SIGTERM")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	srv := server.New(server.Config{
		Addr: *addr, Hz: *hz, SpectateHz: *spectateHz, MaxPlayers: *maxPlayers,
		AuthSecret: *authSecret, Origins: splitList(*origins), NATS: *natsURL,
		STUN: splitList(*stun), TURN: splitList(*turn), TURNSecret: *turnSecret,
		RoomIdle: *roomIdle, Grace: *grace, Drain: *drain, Logger: logger,
	})
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	logger.Info("serving", "addr", ln.Addr().String(), "hz", *hz)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
