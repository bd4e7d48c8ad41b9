package server

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/internal/lossy"
	"github.com/tickwire/tickwire/internal/rtc"
)

// relayOnlySettings keeps a client's ICE on loopback and lets it reach the
// server only at lossy.RelayIP: a path that skips the relay is never checked.
func relayOnlySettings() *webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	rtc.Loopback(&se)
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.Equal(lossy.RelayIP) })
	return &se
}

// latestN is the tick of c's newest snapshot, 0 before the first.
func latestN(c *player.Client) uint64 {
	if s := c.Latest(); s != nil {
		return s.N
	}
	return 0
}

// since returns, in order, the ticks after from that l holds.
func (l *snapLog) since(from uint64) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ticks []uint64
	for n := range l.snaps {
		if n > from {
			ticks = append(ticks, n)
		}
	}
	slices.Sort(ticks)
	return ticks
}

// TestRTCDeltaClientConvergesUnderLoss shows that delta snapshots over an
// unreliable, unordered state channel survive a lossy path: a delta client
// takes its state on the channel through a UDP relay that drops 10% of the
// datagrams each way and delays the others by 20 ms ± 10 ms, while a full
// client of the same room takes every tick on its WebSocket, both moving.
// Frames are lost (the relay drops some, the delta client's ticks have
// gaps), yet each of the few hundred ticks the delta client rebuilt is the
// full client's (integer columns exact, others within half their column's
// step), the delta client's newest tick stays close to the full client's,
// and most of its frames come on the channel. The client admits only the
// relay's address as a remote candidate, so nothing bypasses the link.
//
// The delta client skips more ticks than the link drops: about a quarter of
// them, where the link drops a tenth of the datagrams; on the same link
// without loss it skips about as many, and with the delay but no jitter
// none. The jitter reorders datagrams, and Pion's SCTP, which abandons a
// chunk of a channel without retransmissions as it first sends it, moves the
// receiver's cumulative TSN past frames still on their way with FORWARD-TSNs
// that may overtake them (pion/sctp#505); the receiver then discards such a
// frame as a duplicate. The test counts ticks rather than seconds, so that
// share only makes it run a little longer.
func TestRTCDeltaClientConvergesUnderLoss(t *testing.T) {
	const (
		hz      = 60
		want    = 300              // ticks rebuilt by the delta client and compared
		minCmp  = 250              // of which the full client has at least
		maxLag  = uint64(hz)       // the delta client at most 1 s of ticks behind
		seed    = 7                // the relay's draws
		setupIn = 30 * time.Second // ICE, DTLS and SCTP through the link
		within  = 60 * time.Second // want ticks on a loaded machine
	)
	checkNoLeaks(t)
	port, err := lossy.FreeRelayPort()
	if err != nil {
		t.Fatal(err)
	}
	serverUDP := fmt.Sprintf("127.0.0.1:%d", port)
	ts := start(t, Config{Hz: hz, RTCUDP: serverUDP, RTCPublicIPs: []string{lossy.RelayIP.String()}})
	if err := ts.rtc.Listen(""); err != nil { // now, rather than at the offer: the port was free a moment ago
		t.Fatal(err)
	}
	link := lossy.Link{Loss: 0.1, Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond, Seed: seed}
	relay, err := lossy.ListenUDP(lossy.Config{Listen: fmt.Sprintf("%s:%d", lossy.RelayIP, port), Target: serverUDP, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// After the clients, before the server and the goroutine check.
		if err := relay.Close(); err != nil {
			t.Errorf("closing the relay: %v", err)
		}
		if err := relay.Close(); !errors.Is(err, lossy.ErrClosed) {
			t.Errorf("second Close of the relay: %v, want %v", err, lossy.ErrClosed)
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: lossy.RelayIP, Port: port})
		if err != nil {
			t.Errorf("the relay's port is still held after Close: %v", err)
			return
		}
		pc.Close()
	})

	full, fullLog, d, dLog := fullAndDeltaOverRTC(t, ts, func(o *player.Options) {
		o.RTCLoopback = false // relayOnlySettings keeps ICE on loopback, with its own remote filter
		o.RTCSettings = relayOnlySettings()
	})

	// The retransmissions of the setup's handshakes over the lossy link
	// take a while on a loaded machine.
	setup := time.Now()
	for d.Transport() != player.TransportUDP || d.Latest() == nil {
		if d.Err() != nil || time.Since(setup) > setupIn {
			t.Fatalf("transport %s after %v (stats %+v, relay %+v, connection: %v)",
				d.Transport(), time.Since(setup), d.Stats(), relay.Stats(), d.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	tookSetup := time.Since(setup)
	from := latestN(d)
	stFrom, relayFrom, rtcFrom := d.Stats(), relay.Stats(), ts.rtc.Totals()

	// Watch until the delta client has rebuilt want ticks after from,
	// sampling how far behind the full client it is.
	var worstLag, lagSum, samples uint64
	watch := time.Now()
	for len(dLog.since(from)) < want {
		if dn, fn := latestN(d), latestN(full); fn > dn {
			worstLag = max(worstLag, fn-dn)
			lagSum += fn - dn
		}
		samples++
		if d.Err() != nil || full.Err() != nil || time.Since(watch) > within {
			t.Fatalf("delta client rebuilt %d ticks after %d in %v, want %d (at tick %d, full client at %d; connections: %v, %v)",
				len(dLog.since(from)), from, time.Since(watch), want, latestN(d), latestN(full), d.Err(), full.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(watch)
	stTo, relayTo, rtcTo := d.Stats(), relay.Stats(), ts.rtc.Totals()
	ticks := dLog.since(from)[:want]
	to := ticks[want-1]
	// The full client's WebSocket brings every tick up to to, give or
	// take the frames still on their way.
	for latestN(full) < to {
		if full.Err() != nil || time.Since(watch) > within {
			t.Fatalf("full client at tick %d, want %d (connection: %v)", latestN(full), to, full.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}

	fullLog.mu.Lock()
	dLog.mu.Lock()
	defer fullLog.mu.Unlock()
	defer dLog.mu.Unlock()
	if dLog.err != nil || fullLog.err != nil {
		t.Fatalf("snapshots out of order: delta client %v, full client %v", dLog.err, fullLog.err)
	}
	compared, missed := 0, 0 // missed: ticks the full client has and the delta client skipped
	worst := 0.0
	prev := from
	for _, n := range ticks {
		for m := prev + 1; m < n; m++ {
			if _, ok := fullLog.snaps[m]; ok {
				missed++
			}
		}
		prev = n
		ref, ok := fullLog.snaps[n]
		if !ok {
			continue
		}
		diff, err := compareSnaps(d.Schema(), dLog.snaps[n], ref)
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, diff)
		compared++
	}

	onChannel := stTo.ChannelFrames - stFrom.ChannelFrames
	onWS := wsFrames(stTo) - wsFrames(stFrom)
	down := relayTo.Down.Packets - relayFrom.Down.Packets
	lost := relayTo.Down.Lost - relayFrom.Down.Lost
	t.Logf("set up in %v; ticks %d..%d in %v: compared %d, largest difference %.3g; the delta client skipped %d ticks (%.1f%%), %d stale, %d keyframes",
		tookSetup.Round(time.Millisecond), from+1, to, took.Round(time.Millisecond), compared, worst,
		missed, 100*float64(missed)/float64(to-from), stTo.Stale-stFrom.Stale, stTo.Keyframes-stFrom.Keyframes)
	t.Logf("relay: %d of %d datagrams to the client lost (%.1f%%), %d of %d from it; server: %d state bytes sent on the channel, %d frames dropped; delta client: %d bytes received",
		lost, down, 100*float64(lost)/float64(max(down, 1)), relayTo.Up.Lost-relayFrom.Up.Lost, relayTo.Up.Packets-relayFrom.Up.Packets,
		rtcTo.BytesOut-rtcFrom.BytesOut, rtcTo.Dropped-rtcFrom.Dropped, stTo.Bytes-stFrom.Bytes)
	t.Logf("frames: %d on the channel, %d on the WebSocket (%.1f%% on the channel); lag behind the full client: worst %d ticks, mean %.1f over %d samples",
		onChannel, onWS, 100*float64(onChannel)/float64(max(onChannel+onWS, 1)), worstLag, float64(lagSum)/float64(max(samples, 1)), samples)

	// The state took the channel, through the relay.
	if onWS*4 > onChannel {
		t.Errorf("%d frames on the channel and %d on the WebSocket over ticks %d..%d", onChannel, onWS, from+1, to)
	}
	if relayTo.Up.Bytes == 0 || down-lost < onChannel/2 {
		t.Errorf("relay: %+v; %d frames on the channel", relayTo, onChannel)
	}
	// Frames were lost, and the delta client went on.
	if lost == 0 || missed == 0 {
		t.Errorf("nothing lost: %d datagrams dropped by the relay, %d ticks skipped by the delta client", lost, missed)
	}
	if compared < minCmp {
		t.Errorf("only %d of the delta client's %d ticks compared, want %d", compared, want, minCmp)
	}
	if worstLag > maxLag {
		t.Errorf("the delta client fell %d ticks behind the full client (at most %d)", worstLag, maxLag)
	}
}
