package bench

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tickwire/tickwire/clients/spectator"
	"github.com/tickwire/tickwire/server"
	"github.com/tickwire/tickwire/wire"
)

// start runs an in-process server whose "process" is this test's own, so
// that the /proc readers are exercised too.
func start(t *testing.T, hz int) *InProcess {
	t.Helper()
	p, err := StartInProcess(server.Config{Hz: hz, NoOverload: true})
	if err != nil {
		t.Fatal(err)
	}
	p.PID = os.Getpid()
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGame(t *testing.T) {
	t.Parallel()
	p := start(t, 20)
	res, err := RunGame(testCtx(t), p.Target, GameConfig{
		Players: 6, RoomSize: 4, Duration: time.Second, Warmup: 200 * time.Millisecond,
		Ticks: &RoomProbe{Server: p.Server},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rooms != 2 || res.Hz != 20 || res.InputHz != 20 {
		t.Errorf("rooms %d, hz %d, input hz %d; want 2, 20, 20", res.Rooms, res.Hz, res.InputHz)
	}
	if res.TicksRun <= 0 || res.TicksNominal < res.TicksRun || res.TicksPct <= 0 || res.TicksPct > 100 {
		t.Errorf("ticks %d of %d (%v%%)", res.TicksRun, res.TicksNominal, res.TicksPct)
	}
	if res.Latency.N == 0 || res.Latency.P50 < 0 || res.Latency.P99 < res.Latency.P50 {
		t.Errorf("latency %+v", res.Latency)
	}
	if res.LatencyRx.N > 0 && res.LatencyRx.P50 > res.Latency.P50 {
		t.Errorf("latency at socket arrival %+v above latency at read %+v", res.LatencyRx, res.Latency)
	}
	if res.Gap.N == 0 || res.Gap.P50 < 20 || res.Gap.P50 > 500 {
		t.Errorf("update gap %+v, want about 50 ms", res.Gap)
	}
	if res.BytesInPerClient <= 0 || res.BytesOutPerClient <= 0 || res.MsgsInPerClient <= 0 || res.MsgsOutPerClient <= 0 {
		t.Errorf("per client: in %v B/s, out %v B/s, %v msgs in/s, %v out/s", res.BytesInPerClient, res.BytesOutPerClient, res.MsgsInPerClient, res.MsgsOutPerClient)
	}
	if res.Tick == nil || res.Tick.N == 0 || res.Tick.P50 <= 0 {
		t.Errorf("tick durations %+v", res.Tick)
	}
	if res.ServerCPUPct == nil || *res.ServerCPUPct < 0 || res.ServerRSSAfter <= 0 || res.ServerRSSPerPlayer == nil {
		t.Errorf("server CPU %v, RSS %d", res.ServerCPUPct, res.ServerRSSAfter)
	}
	if res.Dropped != 0 {
		t.Errorf("%d bots dropped", res.Dropped)
	}
	var buf bytes.Buffer
	GameTable([]*GameResult{res}, true).Write(&buf)
	if !strings.Contains(buf.String(), "ticks run / nominal") || !strings.Contains(buf.String(), "verdict") {
		t.Errorf("table:\n%s", buf.String())
	}
}

// TestGameDelta runs the same small load in both modes: delta bots get
// their snapshots and receive fewer bytes than full-snapshot bots. A slow
// bot gets the newest snapshot instead of each one, so a stall of a loaded
// machine (a 400 ms one was seen beside another make test) costs a share
// of the window: over 2 s, half of the snapshots is the floor.
func TestGameDelta(t *testing.T) {
	t.Parallel()
	p := start(t, 20)
	run := func(delta bool) *GameResult {
		res, err := RunGame(testCtx(t), p.Target, GameConfig{
			Players: 8, RoomSize: 8, Duration: 2 * time.Second, Warmup: 300 * time.Millisecond, Delta: delta,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	full, delta := run(false), run(true)
	if !delta.Delta || delta.TicksRun <= 0 || delta.DeliveredPct < 50 || delta.Latency.N == 0 {
		t.Fatalf("delta run: delta %v, ticks %d, delivered %v%%, latency %+v", delta.Delta, delta.TicksRun, delta.DeliveredPct, delta.Latency)
	}
	if delta.BytesInPerClient >= full.BytesInPerClient {
		t.Fatalf("delta %v B/s per client, full %v B/s", delta.BytesInPerClient, full.BytesInPerClient)
	}
}

// TestGameRTC runs the small load with the bots taking state over WebRTC:
// most snapshots of the window come on their channels, none is lost on
// loopback; the inputs go on the channels too, or, state only, on the
// WebSockets.
// It runs alone, not in parallel: its Pion peers take CPU that the timing
// checks of the other tests would feel.
func TestGameRTC(t *testing.T) {
	p := start(t, 20)
	for _, stateOnly := range []bool{false, true} {
		res, err := RunGame(testCtx(t), p.Target, GameConfig{
			Players: 6, RoomSize: 6, Duration: time.Second, Warmup: time.Second, RTC: true, RTCInputsOnWebSocket: stateOnly,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.RTC || res.TicksRun <= 0 || res.DeliveredPct < 80 || res.ChannelPct < 50 || res.Dropped != 0 {
			t.Fatalf("rtc run, state only %v: ticks %d, delivered %v%%, on the channel %v%%, dropped %d", stateOnly, res.TicksRun, res.DeliveredPct, res.ChannelPct, res.Dropped)
		}
		if stateOnly && (res.InputsOnChannelPct != 0 || !res.RTCInputsOnWebSocket) || !stateOnly && res.InputsOnChannelPct < res.ChannelPct/2 {
			t.Errorf("state only %v: %v%% of the inputs on the channel", stateOnly, res.InputsOnChannelPct)
		}
		var buf bytes.Buffer
		GameTable([]*GameResult{res}, false).Write(&buf)
		if !strings.Contains(buf.String(), "snapshots on the state channel") || !strings.Contains(buf.String(), "inputs sent on the state channel") ||
			stateOnly != strings.Contains(buf.String(), "inputs on the WebSocket") {
			t.Errorf("table:\n%s", buf.String())
		}
	}
}

// modeProbe is a RoomProbe that also checks, when the run begins, that
// every room of the run is of the given mode.
type modeProbe struct {
	RoomProbe
	mode string
	bad  []string // rooms of another mode, or gone
}

func (p *modeProbe) Begin(rooms []string) {
	for _, id := range rooms {
		if r, err := p.Server.Lobby().Room(id); err != nil || r.Mode() != p.mode {
			p.bad = append(p.bad, id)
		}
	}
	p.RoomProbe.Begin(rooms)
}

// TestGameShooter runs the load in rooms of the shooter: the bots play
// its five input fields (wandering and firing now and then) blind.
func TestGameShooter(t *testing.T) {
	t.Parallel()
	p := start(t, 20)
	probe := &modeProbe{RoomProbe: RoomProbe{Server: p.Server}, mode: "shooter"}
	res, err := RunGame(testCtx(t), p.Target, GameConfig{
		Players: 4, RoomSize: 4, Duration: time.Second, Warmup: 200 * time.Millisecond, Mode: "shooter",
		Ticks: probe,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "shooter" || res.Rooms != 1 || len(probe.bad) != 0 {
		t.Fatalf("mode %q, %d rooms, not shooter rooms: %v", res.Mode, res.Rooms, probe.bad)
	}
	if res.TicksRun <= 0 || res.Latency.N == 0 || res.Dropped != 0 {
		t.Errorf("ticks %d, latency %+v, %d bots dropped", res.TicksRun, res.Latency, res.Dropped)
	}
	if res.MsgsOutPerClient <= 0 {
		t.Errorf("%v inputs/s per client", res.MsgsOutPerClient)
	}
	// An unknown mode is refused when the rooms are made.
	if _, err := RunGame(testCtx(t), p.Target, GameConfig{Players: 1, RoomSize: 1, Duration: time.Second, Mode: "nope"}); err == nil {
		t.Fatal("a run in rooms of an unknown mode did not fail")
	}
}

func TestFeeds(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{spectator.SSE, spectator.Poll} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			p := start(t, 20)
			res, err := RunFeeds(testCtx(t), p.Target, FeedsConfig{
				Transport: kind, Viewers: 4, Rooms: 2, BotsPerRoom: 2, ChatEvery: 150 * time.Millisecond,
				Duration: time.Second, Settle: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Latency.N == 0 || res.LatencyChat.N == 0 || res.Latency.P50 < 0 {
				t.Errorf("latency %+v, chat %+v", res.Latency, res.LatencyChat)
			}
			if res.BytesInPerViewer <= 0 || res.EventsPerViewer <= 0 {
				t.Errorf("%v B/s, %v events/s per viewer", res.BytesInPerViewer, res.EventsPerViewer)
			}
			if kind == spectator.Poll && res.RequestsPerViewer <= 0 {
				t.Errorf("%v polls/s per viewer", res.RequestsPerViewer)
			}
			if res.ChatsLost != 0 {
				t.Errorf("%d chat lines missed", res.ChatsLost)
			}
			if res.ServerRSSPerViewer == nil {
				t.Error("no memory figure")
			}
		})
	}
}

func TestTransports(t *testing.T) {
	t.Parallel()
	p := start(t, 1)
	res, err := RunTransports(testCtx(t), p.Target, TransportsConfig{Messages: 10, Senders: 2, Interval: 10 * time.Millisecond, Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Figures) != 3 {
		t.Fatalf("%d transports", len(res.Figures))
	}
	for _, f := range res.Figures {
		if f.Received != 10 || f.BytesIn <= 0 || f.SetupIn <= 0 || f.SetupOut <= 0 || f.Latency.N != 10 || f.Latency.P50 < 0 || f.Requests < 1 {
			t.Errorf("%+v", f)
		}
	}
	if lp := res.Figures[2]; lp.Requests < 10 || lp.BytesOut <= 0 {
		t.Errorf("long-poll: %d requests, %d bytes out for 10 messages", lp.Requests, lp.BytesOut)
	}
	idle, err := RunIdle(testCtx(t), p.Target, "sse", 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if idle.RSSAfter <= 0 {
		t.Errorf("idle: %+v", idle)
	}
	var buf bytes.Buffer
	TransportsTable([]*TransportsResult{res}, map[string][]*IdleResult{"sse": {idle}}, "test").Write(&buf)
	if !strings.Contains(buf.String(), "seed estimate") {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestSignaling(t *testing.T) {
	t.Parallel()
	p := start(t, 20)
	res, err := RunSignaling(testCtx(t), p.Target, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 2 || res.Open.N != 2 || res.Open.P50 <= 0 || res.Join.N != 4 {
		t.Errorf("%+v", res)
	}
}

func TestMetricsProbe(t *testing.T) {
	t.Parallel()
	p := start(t, 50)
	if _, err := CreateRoom(testCtx(t), nil2(), p.URL, 4, true); err != nil {
		t.Fatal(err)
	}
	probe := &MetricsProbe{URL: p.URL}
	probe.Begin(nil)
	time.Sleep(300 * time.Millisecond)
	d, src, ok := probe.End()
	if !ok || d.N == 0 || d.P50 <= 0 || d.P99 < d.P50 || src == "" {
		t.Errorf("%+v %q %v", d, src, ok)
	}
}

func TestHistQuantile(t *testing.T) {
	bs := []bucket{{1, 0}, {2, 50}, {4, 100}, {math.Inf(1), 100}}
	for _, c := range []struct{ q, want float64 }{{0.5, 2}, {0.25, 1.5}, {0.75, 3}, {1, 4}} {
		if got := histQuantile(bs, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestStats(t *testing.T) {
	s := samples{5, 1, 4, 2, 3}
	if d := s.dist(); d.N != 5 || d.P50 != 3 || d.P99 != 5 || d.Max != 5 {
		t.Errorf("%+v", d)
	}
	if m := Median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median %v", m)
	}
	g := Goal{Max: true, Value: 3}
	if v := g.verdict(2); v != "met" {
		t.Error(v)
	}
	if v := g.verdict(6); !strings.HasPrefix(v, "missed by 3") {
		t.Error(v)
	}
	u, err := ReadUsage(os.Getpid())
	if err != nil || u.RSS <= 0 || u.CPU < 0 {
		t.Errorf("%+v %v", u, err)
	}
}

func nil2() *http.Client { return &http.Client{Timeout: 5 * time.Second} }

// TestOverloadCountsEveryPlayer runs `bench overload` small, below
// capacity: every offer gets in, the batch readers get their snapshots as
// the probes do, and only the probes' gaps are measured.
func TestOverloadCountsEveryPlayer(t *testing.T) {
	t.Parallel()
	p := start(t, 20)
	res, err := RunOverload(testCtx(t), p.Target, OverloadConfig{
		Offered: 24, JoinRate: 200, Duration: 2 * time.Second, InputHz: 10, ProbeEvery: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Joined != 24 || res.Refused != 0 || res.Failed != 0 || res.Probes != 6 {
		t.Fatalf("joined %d, refused %d, failed %d, probes %d; want 24, 0, 0, 6", res.Joined, res.Refused, res.Failed, res.Probes)
	}
	if res.Hz != 20 || res.InputHz != 10 {
		t.Errorf("hz %d, input hz %d; want 20, 10", res.Hz, res.InputHz)
	}
	if res.DeliveredPct < 90 || res.WorstDeliveredPct < 50 {
		t.Errorf("snapshots delivered: mean %v%%, worst %v%%", res.DeliveredPct, res.WorstDeliveredPct)
	}
	// 6 probes, 2 s at 20 Hz: about 240 gaps of 50 ms.
	if res.Gap.N < 100 || res.Gap.N > 300 || res.Gap.P50 < 20 || res.Gap.P50 > 500 {
		t.Errorf("probes' update gaps %+v, want about 240 of about 50 ms", res.Gap)
	}
	if res.RecoverSec < 0 || res.Dropped != 0 {
		t.Errorf("recovery %v s, %d dropped", res.RecoverSec, res.Dropped)
	}
	// 6 probes, 10 inputs a second for 2 s, each applied at the next tick.
	// Inputs that reach the room in one tick are acknowledged together, one
	// sample: a stall of a loaded machine left 51 (a quarter is the floor).
	if res.InputDelay.N < 30 || res.InputDelay.P50 <= 0 || res.InputDelay.P50 > 1000 {
		t.Errorf("probes' input delays %+v, want about 120 of about 25-50 ms", res.InputDelay)
	}
}

// TestSnapAck reads the ack at the end of full snapshot frames the server
// encodes, for every size of msgpack integer.
func TestSnapAck(t *testing.T) {
	for _, ack := range []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 32, 1<<40 + 3} {
		f := append([]byte("\x83\xa1t\xa4snap\xa1n\x05\xa3ack"), wire.NewSnapEncoder().Ack(ack)...)
		if got, ok := snapAck(f); !ok || got != ack {
			t.Errorf("ack %d: read %d, %v", ack, got, ok)
		}
	}
	if _, ok := snapAck([]byte("\x81\xa1t\xa4pong")); ok {
		t.Error("an ack read from a frame without one")
	}
}
