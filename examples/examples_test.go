// Package examples holds game modes written as a game developer would, each
// in a Go module of its own that imports Tickwire. Its test builds each one
// and runs it as a real server.
package examples

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/internal/bench"
	"github.com/tickwire/tickwire/wire"
)

// TestTagModuleRunsAsAServer builds examples/tag (its own go.mod, a mode in
// under 150 lines, main a single call to server.Main), runs it with serve's
// flags, and plays it: /api/modes lists tag first, a bot joins and moves
// its row, and an SSE viewer sees the room's mode and tables. SIGTERM drains
// it and it exits 0.
func TestTagModuleRunsAsAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a module")
	}
	for _, f := range []string{"tag/tag.go", "tag/main.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); f == "tag/tag.go" && n >= 150 {
			t.Errorf("%s has %d lines; the example promises under 150", f, n)
		}
	}
	bin := filepath.Join(t.TempDir(), "tag")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "tag"
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// Started as `tickwire serve` is, with "serve" first: Main takes it.
	// No refusals for overload: a loaded test machine delays goroutines
	// without the server being past its capacity.
	srv, err := bench.StartServer(context.Background(), bench.ServerOptions{Exe: bin, Hz: 20, CPU: -1, Stderr: os.Stderr,
		Args: []string{"-overload=false"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := srv.URL

	resp, err := http.Get(base + "/api/modes")
	if err != nil {
		t.Fatal(err)
	}
	var modes struct {
		Modes []struct {
			Name   string              `json:"name"`
			Tables map[string][]string `json:"tables"`
			Input  []string            `json:"input"`
		} `json:"modes"`
	}
	err = json.NewDecoder(resp.Body).Decode(&modes)
	resp.Body.Close()
	if err != nil || len(modes.Modes) < 3 || modes.Modes[0].Name != "tag" ||
		!slices.Equal(modes.Modes[0].Tables["p"], []string{"id", "x", "y", "vx", "vy", "it", "score"}) ||
		!slices.Equal(modes.Modes[0].Input, []string{"dx", "dy"}) {
		t.Fatalf("/api/modes: %+v, %v", modes, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bot, err := player.Dial(ctx, player.Options{URL: "ws" + strings.TrimPrefix(base, "http") + wire.PathPlay, Name: "bot"})
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	if w := bot.Welcome(); w.Mode != "tag" || w.W != 800 || w.Schema == nil || w.Schema.Tables[0].Name != "p" {
		t.Fatalf("welcome: mode %q, w %v, schema %+v", w.Mode, w.W, w.Schema)
	}
	v, err := spectator.Watch(ctx, spectator.Options{Server: base, Room: bot.Welcome().Room})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	// The bot runs right; its row moves right and, being alone, it is it.
	var start float64
	moved := false
	for m := range bot.Messages() {
		if _, err := bot.Input(1, 0); err != nil {
			t.Fatal(err)
		}
		s, ok := m.(*wire.Snap)
		if !ok {
			continue
		}
		row := s.Table("p").Find(bot.ID())
		if row == nil {
			continue
		}
		if start == 0 {
			start = row[1]
		}
		if row[5] != 1 {
			t.Fatalf("the only player is not it: %v", row)
		}
		if row[1] > start+40 || row[1] == 800-14 {
			moved = true
			break
		}
	}
	if !moved {
		t.Fatalf("the bot's row never moved right: %v", bot.Err())
	}

	var sawRoom, sawRow bool
	for e := range v.Events() {
		switch e.Type {
		case wire.EventRoom:
			var room wire.SpectatorRoom
			if err := json.Unmarshal(e.Data, &room); err != nil || room.Mode != "tag" || room.Schema == nil {
				t.Fatalf("room event %s: %v", e.Data, err)
			}
			sawRoom = true
		case wire.EventSnap:
			var s wire.SpectatorSnap
			if err := json.Unmarshal(e.Data, &s); err != nil {
				t.Fatal(err)
			}
			if row := s.Table("p").Find(bot.ID()); len(row) == 7 && row[5] == 1 {
				sawRow = true
			}
		}
		if sawRoom && sawRow {
			break
		}
	}
	if !sawRoom || !sawRow {
		t.Fatalf("viewer: room event %v, the bot's row %v (%v)", sawRoom, sawRow, v.Err())
	}

	if err := srv.Close(); err != nil { // SIGTERM
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
