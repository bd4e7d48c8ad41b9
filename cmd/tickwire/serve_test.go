package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/wire"
)

// TestServeDrainsOnSIGTERM runs the real binary: it prints its address
// first, takes its tick rate from the environment, and on SIGTERM answers
// /healthz with 503 and refuses joins while draining, then closes players
// with 1001, ends SSE streams with `closed`, answers parked polls and exits
// 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "tickwire")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "-addr", "127.0.0.1:0", "-drain", "1s", "-log-level", "warn", "-data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "TICKWIRE_HZ=20")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	first, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "listening on http://127.0.0.1:") {
		t.Fatalf("first line %q: %v", first, err)
	}
	base := strings.TrimSpace(strings.TrimPrefix(first, "listening on "))
	ws := "ws" + strings.TrimPrefix(base, "http") + "/ws/play"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := player.Dial(ctx, player.Options{URL: ws, Name: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if hz := p.Welcome().Hz; hz != 20 {
		t.Fatalf("hz %d, want 20 from TICKWIRE_HZ", hz)
	}
	// It offers the built-in modes, arena (the default) first.
	if m := p.Welcome().Mode; m != "arena" {
		t.Fatalf("welcome mode %q, want arena", m)
	}
	if names := modeNames(t, base); names != "arena,shooter" {
		t.Fatalf("GET /api/modes lists %s, want arena,shooter", names)
	}
	room := p.Welcome().Room
	v, _ := spectator.Watch(ctx, spectator.Options{Server: base, Room: room})
	defer v.Close()
	<-v.Events()
	pollDone := make(chan string, 1)
	go func() {
		get := func(query string) (int, []byte) {
			resp, err := http.Get(base + "/rooms/" + room + "/poll" + query)
			if err != nil {
				return 0, []byte(err.Error())
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, body
		}
		_, body := get("")
		var a struct{ Last uint64 }
		_ = json.Unmarshal(body, &a)
		// The player stands still, so this poll parks until the drain.
		status, body := get("?timeout=50&after=" + strconv.FormatUint(a.Last, 10))
		pollDone <- strconv.Itoa(status) + " " + string(body)
	}()
	time.Sleep(300 * time.Millisecond)

	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz while draining: %d", resp.StatusCode)
	}
	if _, err := player.Dial(ctx, player.Options{URL: ws, Name: "late"}); err == nil {
		t.Fatal("a join was accepted while draining")
	}
	for m := range p.Messages() {
		_ = m
	}
	if code := player.CloseCode(p.Err()); code != wire.CloseGoingAway {
		t.Fatalf("player closed with %d, want 1001", code)
	}
	sawClosed := false
	for e := range v.Events() {
		sawClosed = sawClosed || e.Type == wire.EventClosed
	}
	if !sawClosed {
		t.Fatalf("SSE ended without a closed event: %v", v.Err())
	}
	select {
	case got := <-pollDone:
		if !strings.HasPrefix(got, "200") {
			t.Fatalf("parked poll: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("parked poll not answered")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if d := time.Since(began); d < time.Second || d > 8*time.Second {
		t.Fatalf("exited %v after SIGTERM with -drain 1s", d)
	}
}

// modeNames returns the names GET /api/modes lists at base, comma-separated.
func modeNames(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/modes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Modes []struct{ Name string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/modes: %d %v", resp.StatusCode, err)
	}
	var names []string
	for _, m := range body.Modes {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// serve refuses a -modes that names no mode it has, before listening.
func TestServeRefusesUnknownModes(t *testing.T) {
	for _, modes := range []string{"nope", "arena,nope", ""} {
		err := runServe(context.Background(), []string{"-addr", "127.0.0.1:0", "-modes", modes})
		if err == nil || !strings.Contains(err.Error(), "-modes") {
			t.Errorf("-modes %q: %v, want a -modes error", modes, err)
		}
	}
}
