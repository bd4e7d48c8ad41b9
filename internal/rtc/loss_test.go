package rtc

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/internal/overload"
)

// lossyNet is a Pion virtual network of a server (10.0.0.1) and a client
// (10.0.0.2) that drops a share of the packets between them, both ways,
// and another share of the client's packets alone.
type lossyNet struct {
	router        *vnet.Router
	server        *vnet.Net
	client        *vnet.Net
	lossPercent   atomic.Int64
	upLossPercent atomic.Int64 // of the client's packets
}

func newLossyNet(t *testing.T) *lossyNet {
	t.Helper()
	quiet := &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	r, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n := &lossyNet{router: r}
	if n.server, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if n.client, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.0.0.2"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddNet(n.server); err != nil {
		t.Fatal(err)
	}
	if err := r.AddNet(n.client); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards rng
	rng := rand.New(rand.NewPCG(1, 2))
	fromClient := net.ParseIP("10.0.0.2")
	r.AddChunkFilter(func(c vnet.Chunk) bool {
		mu.Lock()
		defer mu.Unlock()
		if ua, ok := c.SourceAddr().(*net.UDPAddr); ok && ua.IP.Equal(fromClient) && rng.Int64N(100) < n.upLossPercent.Load() {
			return false
		}
		return rng.Int64N(100) >= n.lossPercent.Load()
	})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return n
}

// vnetClient is a Pion peer on the lossy network's client side.
func (n *lossyNet) vnetClient(t *testing.T) *client {
	t.Helper()
	var se webrtc.SettingEngine
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	se.SetNet(n.client)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return newClientWith(t, webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{})))
}

// openChannel has c offer to p and waits until both sides have the channel
// open.
func openChannel(t *testing.T, c *client, p *Peer) {
	t.Helper()
	c.connect(t, p)
	for !p.Open() {
		time.Sleep(5 * time.Millisecond)
	}
}

// runUnderLoss sends numbered frames of size bytes from p every 10 ms for
// 2 s while a fifth of the packets are lost, with the client sending a
// message back every 10 ms too. It returns the share of the frames written
// on the channel that the client got (a writer starved on a busy machine
// sends the newest of a few, latest wins, and the rest are not the
// path's loss), the longest time it went without one, and the share of the
// client's messages the server got.
func runUnderLoss(t *testing.T, n *lossyNet, p *Peer, c *client, size int, received *atomic.Int64) (got float64, longest time.Duration, back float64) {
	t.Helper()
	n.lossPercent.Store(20)
	defer n.lossPercent.Store(0)
	const frames = 200
	seen := make(map[uint32]bool)
	done := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(done)
		start, last := time.Now(), time.Now()
		var timeout <-chan time.Time
		for {
			select {
			case m := <-c.got:
				if len(m) < 4 {
					continue
				}
				seen[binary.BigEndian.Uint32(m)] = true
				longest = max(longest, time.Since(last))
				last = time.Now()
				if binary.BigEndian.Uint32(m) == frames-1 {
					return
				}
			case <-sent:
				sent = nil
				timeout = time.After(500 * time.Millisecond) // stragglers
			case <-timeout:
				if len(seen) == 0 {
					longest = time.Since(start)
				} else {
					longest = max(longest, time.Since(last))
				}
				return
			}
		}
	}()
	received.Store(0)
	written := p.Stats().Sent
	frame := make([]byte, size)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range frames {
		<-tick.C
		binary.BigEndian.PutUint32(frame, uint32(i))
		p.SendState(frame, nil)
		_ = c.dc.Send([]byte("input"))
	}
	close(sent)
	<-done
	written = p.Stats().Sent - written
	if written == 0 {
		t.Fatalf("%d-byte frames: none written on the channel", size)
	}
	return float64(len(seen)) / float64(written), longest, float64(received.Load()) / frames
}

func TestStateKeepsFlowingUnderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("6 s of traffic under loss")
	}
	base := waitBase()
	n := newLossyNet(t)
	s := New(Config{UDP: "10.0.0.1:5000", Net: n.server, MaxFrame: -1, MaxBuffered: 1 << 20})
	var received atomic.Int64
	c := n.vnetClient(t)
	r := &router{to: c}
	p, err := s.NewPeer(PeerConfig{Signal: r.signal(t), Receive: func([]byte) { received.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	openChannel(t, c, p)

	// Frames that fit one SCTP chunk: about 80% arrive, evenly, and what
	// the client sends keeps the channel in use. Evenly: no stall of
	// seconds, as the large frames below see. A few runs in a hundred still
	// stall for a second or two: when the client's last SACKs are lost, the
	// server's SCTP waits for its retransmission timer (rtoMax). Before the
	// timer's cap, 5 runs in 54 stalled, and in 4 of them the next run on
	// the same channel stalled too (two then stayed silent for 5 s); with
	// it, 6 in 141, and in 4 of them the next run flowed again (46-75% of
	// the frames arrived). The server sends state on the WebSocket
	// meanwhile, as the channel holds more than Config.MaxBuffered
	// unacknowledged (TestCongestedChannelLeavesStateToTheWebSocket), and
	// the browser client offers a new channel after a second without state
	// on it: so does this test, up to three runs, and one must flow evenly.
	// On a machine so busy that goroutines wait over 20 ms to run (the
	// server's overload threshold), SCTP's timers run late and frames wait
	// in its queue past the end of the run (42% arrived, with a 1.5 s gap,
	// beside another make test): then only some flow both ways is judged.
	for try := 1; ; try++ {
		sched := overload.NewSchedLatency()
		got, longest, back := runUnderLoss(t, n, p, c, 500, &received)
		waited, _ := sched.P99()
		t.Logf("500-byte frames, 20%% loss, run %d: %.0f%% of those written arrived, longest gap %v; %.0f%% of the client's messages arrived; goroutines waited up to %v to run (p99)",
			try, 100*got, longest, 100*back, waited)
		busy := waited > overload.DefaultSchedLimit
		if busy && got >= 0.1 && back >= 0.1 || !busy && got >= 0.5 && back >= 0.5 && longest <= 2*time.Second {
			break
		}
		if try == 3 {
			t.Fatalf("500-byte frames under 20%% loss, %d runs: the last had %.0f%% arrive, longest gap %v, %.0f%% back", try, 100*got, longest, 100*back)
		}
		old := c
		c = n.vnetClient(t)
		r.set(c)
		openChannel(t, c, p) // replaces the stuck connection
		_ = old.pc.GracefulClose()
	}
	// Frames of three SCTP chunks each: measured with Pion v4.2.26, from
	// none to about half arrive, with stalls of up to seconds (pion/sctp
	// #138), and the small frames after them still stall now and then:
	// why Config.MaxFrame sends such frames on the WebSocket. Logged, not
	// checked: a fixed Pion would do better.
	got, longest, _ := runUnderLoss(t, n, p, c, 3000, &received)
	t.Logf("3000-byte frames, 20%% loss: %.0f%% arrived, longest gap %v", 100*got, longest)
	got, longest, _ = runUnderLoss(t, n, p, c, 500, &received)
	t.Logf("500-byte frames again: %.0f%% arrived, longest gap %v", 100*got, longest)

	p.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.pc.GracefulClose()
	waitGoroutines(t, base)
}

// TestCongestedChannelLeavesStateToTheWebSocket: while every packet from the
// client is lost, its SCTP acknowledgements with them, the frames the server
// sends stay in the channel's buffer; once that holds over MaxBuffered,
// SendState reports false, and the caller sends the state on the
// WebSocket, instead of frames being dropped until SCTP's retransmission
// timer (a second or more) frees the buffer. When the acknowledgements come
// back, the channel takes frames again.
func TestCongestedChannelLeavesStateToTheWebSocket(t *testing.T) {
	base := waitBase()
	n := newLossyNet(t)
	s := New(Config{UDP: "10.0.0.1:5000", Net: n.server, MaxFrame: -1}) // MaxBuffered: 4 KiB
	c := n.vnetClient(t)
	r := &router{to: c}
	p, err := s.NewPeer(PeerConfig{Signal: r.signal(t)})
	if err != nil {
		t.Fatal(err)
	}
	openChannel(t, c, p)
	frame := make([]byte, 500)
	// sendUntil sends a frame every 10 ms until SendState reports want,
	// and returns how many it took meanwhile.
	sendUntil := func(want bool, within time.Duration) (taken int) {
		t.Helper()
		for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
			if p.SendState(frame, nil) == want {
				return taken
			}
			if !want {
				taken++
			}
			if time.Now().After(deadline) {
				t.Fatalf("SendState did not report %t within %v (stats %+v)", want, within, p.Stats())
			}
		}
	}
	sendUntil(true, 5*time.Second)

	n.upLossPercent.Store(100)
	taken := sendUntil(false, 5*time.Second)
	st := p.Stats()
	t.Logf("with the client's packets lost: %d frames taken before the channel was congested; stats %+v", taken, st)
	if taken < 4 || st.Congested == 0 || s.Totals().Congested != st.Congested {
		t.Fatalf("%d frames taken, then congested: stats %+v, totals %+v", taken, st, s.Totals())
	}

	n.upLossPercent.Store(0)
	sendUntil(true, 10*time.Second)
	p.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.pc.GracefulClose()
	waitGoroutines(t, base)
}
