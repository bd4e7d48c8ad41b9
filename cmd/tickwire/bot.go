package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/wire"
)

func runBot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "server URL (http(s):// or ws(s)://)")
	n := fs.Int("n", 8, "number of bots")
	roomID := fs.String("room", "auto", `room id, or "auto"`)
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	every := fs.Duration("report", 2*time.Second, "how often to log the bots' state")
	if err := parseWithEnv(fs, args); err != nil {
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
		c, err := player.Dial(ctx, player.Options{URL: wsURL, Name: fmt.Sprintf("bot-%d", i+1), Room: *roomID, Discard: true})
		if err != nil {
			return fmt.Errorf("bot %d: %w", i+1, err)
		}
		defer c.Close()
		bots[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); wander(ctx, c) }()
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

// wander moves a bot in smooth random curves at its room's tick rate,
// turning back toward the middle when it nears a wall.
func wander(ctx context.Context, c *player.Client) {
	w := c.Welcome()
	hz := max(w.Hz, 1)
	t := time.NewTicker(time.Second / time.Duration(hz))
	defer t.Stop()
	angle := rand.Float64() * 2 * math.Pi
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			return
		case <-t.C:
			angle += (rand.Float64() - 0.5) * 0.6
			if me := own(c); me != nil && nearWall(me.X, me.Y, w.W, w.H, 4*w.R) {
				angle = math.Atan2(w.H/2-me.Y, w.W/2-me.X) + (rand.Float64()-0.5)*1.5
			}
			if _, err := c.Input(math.Cos(angle), math.Sin(angle)); err != nil {
				return
			}
		}
	}
}

// own returns the bot's row of its newest snapshot, or nil.
func own(c *player.Client) *wire.PlayerState {
	snap := c.Latest()
	if snap == nil {
		return nil
	}
	for i := range snap.P {
		if snap.P[i].ID == c.ID() {
			return &snap.P[i]
		}
	}
	return nil
}

func nearWall(x, y, w, h, margin float64) bool {
	return x < margin || y < margin || x > w-margin || y > h-margin
}

func report(c *player.Client) {
	if p := own(c); p != nil {
		slog.Info("bot", "room", c.Welcome().Room, "id", p.ID, "x", math.Round(p.X), "y", math.Round(p.Y),
			"score", p.Score, "rtt_ms", p.RTT, "tick", c.Latest().N, "snaps", c.Stats().Snaps)
	}
}
