package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/internal/flagenv"
	"github.com/tickwire/tickwire/server"
	"github.com/tickwire/tickwire/wire"
)

func runBot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "server URL (http(s):// or ws(s)://)")
	n := fs.Int("n", 8, "number of bots")
	roomID := fs.String("room", "auto", `room id, or "auto"`)
	mode := fs.String("mode", "", `with -room auto: the game mode (default: the server's default)`)
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	every := fs.Duration("report", 2*time.Second, "how often to log the bots' state")
	rtcOn := fs.Bool("rtc", false, "take state over WebRTC DataChannels (ICE servers from the server's /api/ice)")
	if err := flagenv.ParseWithEnv(fs, args); err != nil {
		return err
	}
	wsURL, err := wire.WebSocketURL(*server, wire.PathPlay)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	bots := make([]*player.Client, *n)
	for i := range bots {
		c, err := player.Dial(ctx, player.Options{URL: wsURL, Name: fmt.Sprintf("bot-%d", i+1), Room: *roomID, Mode: *mode, Discard: true, RTC: *rtcOn})
		if err != nil {
			return fmt.Errorf("bot %d: %w", i+1, err)
		}
		defer c.Close()
		bots[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); play(ctx, c, botFor(c, uint64(i+1))) }()
	}
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-tick.C:
			for _, c := range bots {
				report(c)
			}
		}
	}
}

// botFor returns the player of a bot: the mode's own bot when the mode is
// a built-in one, else one that wanders by the room's schema.
func botFor(c *player.Client, seed uint64) game.Bot {
	w := c.Welcome()
	if spec, ok := server.BuiltinMode(w.Mode); ok {
		return spec.NewBot(seed)
	}
	return game.NewWanderBot(seed, &game.Spec{Tables: w.Schema.Tables, Input: w.Schema.Input})
}

// play sends the bot's inputs at its room's tick rate, each picked from the
// newest snapshot.
func play(ctx context.Context, c *player.Client, bot game.Bot) {
	w := c.Welcome()
	field := game.Field{W: w.W, H: w.H, Speed: w.Speed, R: w.R}
	t := time.NewTicker(time.Second / time.Duration(max(w.Hz, 1)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			return
		case <-t.C:
			if _, err := c.Input(bot.Input(c.Latest(), c.ID(), field)...); err != nil {
				return
			}
		}
	}
}

// report logs the bot's own row, column by column.
func report(c *player.Client) {
	snap := c.Latest()
	if snap == nil {
		return
	}
	for _, t := range c.Schema().Tables {
		row := snap.Table(t.Name).Find(c.ID())
		if row == nil {
			continue
		}
		attrs := []any{"room", c.Welcome().Room, "mode", c.Welcome().Mode, "table", t.Name}
		for i, col := range t.Columns {
			attrs = append(attrs, col.Name, math.Round(row[i]*100)/100)
		}
		slog.Info("bot", append(attrs, "tick", snap.N, "snaps", c.Stats().Snaps, "state", c.Transport())...)
		return
	}
}
