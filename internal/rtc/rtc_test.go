package rtc

import (
	"bytes"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/wire"
)

// client is a Pion peer on loopback offering a `state` channel to a Peer,
// with the signaling done in memory.
type client struct {
	pc   *webrtc.PeerConnection
	dc   *webrtc.DataChannel
	open chan struct{}
	got  chan []byte

	mu    sync.Mutex // guards cands
	cands []*wire.ICECandidate
}

func newClient(t *testing.T) *client {
	t.Helper()
	var se webrtc.SettingEngine
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	Loopback(&se)
	return newClientWith(t, webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{})))
}

// newClientWith makes the client on api.
func newClientWith(t *testing.T, api *webrtc.API) *client {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	ordered, none := false, uint16(0)
	dc, err := pc.CreateDataChannel(wire.StateChannelLabel, &webrtc.DataChannelInit{Ordered: &ordered, MaxRetransmits: &none})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{pc: pc, dc: dc, open: make(chan struct{}), got: make(chan []byte, 64)}
	dc.OnOpen(func() { close(c.open) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case c.got <- m.Data:
		default:
		}
	})
	t.Cleanup(func() { _ = pc.GracefulClose() })
	return c
}

// connect offers to p and exchanges candidates until the channel opens.
func (c *client) connect(t *testing.T, p *Peer) {
	t.Helper()
	gathered := webrtc.GatheringCompletePromise(c.pc)
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered // the offer then carries the client's candidates
	if err := p.Offer(c.pc.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.open:
	case <-time.After(10 * time.Second):
		t.Fatal("the channel did not open")
	}
}

// router is a Peer's Signal: it hands each message to the client that
// made the newest offer.
type router struct {
	mu sync.Mutex // guards to
	to *client
}

func (r *router) set(c *client) {
	r.mu.Lock()
	r.to = c
	r.mu.Unlock()
}

func (r *router) signal(t *testing.T) func(wire.ServerMessage) {
	return func(m wire.ServerMessage) {
		r.mu.Lock()
		c := r.to
		r.mu.Unlock()
		c.take(t, m)
	}
}

// take applies the answer and keeps and adds the candidates.
func (c *client) take(t *testing.T, m wire.ServerMessage) {
	switch m := m.(type) {
	case *wire.RTCAnswer:
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			t.Errorf("answer: %v", err)
		}
	case *wire.RTCICE:
		c.mu.Lock()
		c.cands = append(c.cands, m.Candidate)
		c.mu.Unlock()
		if m.Candidate != nil {
			_ = c.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid,
				SDPMLineIndex: m.Candidate.SDPMLineIndex})
		}
	}
}

func TestPeersShareOnePortAndCarryState(t *testing.T) {
	base := runtime.NumGoroutine()
	s := New(Config{UDP: "127.0.0.1:0", Loopback: true, Idle: 300 * time.Millisecond, MaxFrame: 600})
	if err := s.Listen(""); err != nil {
		t.Fatal(err)
	}
	port := s.Addr().String()[strings.LastIndex(s.Addr().String(), ":")+1:]

	received := make(chan []byte, 64)
	var peers []*Peer
	var clients []*client
	var routers []*router
	for range 2 {
		c := newClient(t)
		r := &router{to: c}
		p, err := s.NewPeer(PeerConfig{Signal: r.signal(t), Receive: func(m []byte) {
			select {
			case received <- append([]byte(nil), m...):
			default:
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if p.SendState([]byte("early"), nil) {
			t.Fatal("SendState took a frame before any offer")
		}
		c.connect(t, p)
		peers, clients, routers = append(peers, p), append(clients, c), append(routers, r)
	}
	if s.Peers() != 2 {
		t.Fatalf("%d peers", s.Peers())
	}
	for i, c := range clients {
		c.mu.Lock()
		cands := c.cands
		c.mu.Unlock()
		hosts := 0
		for _, cand := range cands {
			if cand == nil {
				continue
			}
			f := strings.Fields(cand.Candidate)
			if len(f) < 6 || f[5] != port {
				t.Fatalf("peer %d: candidate %q not on the one port %s", i, cand.Candidate, port)
			}
			hosts++
		}
		if hosts == 0 {
			t.Fatalf("peer %d: no candidate trickled", i)
		}
	}

	// State goes out on the channel; a frame over MaxFrame does not.
	p, c := peers[0], clients[0]
	deadline := time.Now().Add(5 * time.Second)
	for got := false; !got; {
		if !p.SendState([]byte("state-"), []byte("1")) {
			t.Fatal("SendState refused a small frame on an open channel")
		}
		select {
		case m := <-c.got:
			got = string(m) == "state-1"
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no state frame arrived")
		}
	}
	if p.SendState(make([]byte, 601), nil) {
		t.Fatal("SendState took a frame over MaxFrame")
	}
	// What the client sends reaches Receive and keeps the channel in use.
	if err := c.dc.SendText("in"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-received:
		if string(m) != "in" {
			t.Fatalf("received %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received")
	}
	// Silence longer than Idle: state goes back to the WebSocket; a
	// message from the client brings it back.
	time.Sleep(400 * time.Millisecond)
	if p.Open() || p.SendState([]byte("x"), nil) {
		t.Fatal("a silent channel still takes state")
	}
	_ = c.dc.SendText("again")
	for !p.Open() {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("the channel did not come back after a message")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A second offer replaces the first connection on the same Peer.
	c2 := newClient(t)
	routers[0].set(c2)
	c2.connect(t, p)
	for !p.SendState([]byte("to-new"), nil) { // the server's side opens a moment after the client's
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("the new connection takes no state")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A message larger than the reader's first buffer arrives whole; one
	// over maxInbound closes the channel, and state leaves it.
	p1, c1 := peers[1], clients[1]
	for !p1.Open() {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("the second peer's channel never opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for len(received) > 0 {
		<-received
	}
	if err := c1.dc.Send(bytes.Repeat([]byte("i"), 2000)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-received:
		if len(m) != 2000 {
			t.Fatalf("received %d bytes, sent 2000", len(m))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a 2,000-byte message did not arrive")
	}
	if err := c1.dc.Send(make([]byte, maxInbound+1)); err != nil {
		t.Fatal(err)
	}
	for p1.Open() {
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatal("a channel over the inbound limit stays open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(received) > 0 {
		t.Fatalf("an oversized message reached Receive (%d bytes)", len(<-received))
	}
	for _, p := range peers {
		p.Close()
		p.Close() // twice is fine
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NewPeer(PeerConfig{Signal: func(wire.ServerMessage) {}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewPeer after Close: %v", err)
	}
	for _, c := range append(clients, c2) {
		_ = c.pc.GracefulClose()
	}
	waitGoroutines(t, base)
}

func TestBadOffersAreTheClientsFault(t *testing.T) {
	base := runtime.NumGoroutine()
	s := New(Config{UDP: "127.0.0.1:0", Loopback: true})
	p, err := s.NewPeer(PeerConfig{Signal: func(wire.ServerMessage) {}})
	if err != nil {
		t.Fatal(err)
	}
	for _, sdp := range []string{"", "garbage", "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"} {
		err := p.Offer(sdp)
		var oe *OfferError
		if !errors.As(err, &oe) || !oe.BadMessage() {
			t.Fatalf("offer %q: %v, want an OfferError", sdp, err)
		}
	}
	if err := p.AddCandidate(&wire.ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}); err != nil {
		t.Fatalf("a candidate before any offer is kept: %v", err)
	}
	p.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
}

func TestListenFailsOnAPortInUse(t *testing.T) {
	a := New(Config{UDP: "127.0.0.1:0"})
	if err := a.Listen(""); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, port, _ := strings.Cut(a.Addr().String(), ":")
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(a.Addr())
	}
	b := New(Config{})
	if err := b.Listen(a.Addr().String()); err == nil {
		b.Close()
		t.Fatal("a second Service opened the same port")
	}
}

// waitBase returns the goroutine count to come back to.
func waitBase() int { return runtime.NumGoroutine() }

func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPublicIPsAreAnnounced(t *testing.T) {
	s := New(Config{UDP: "127.0.0.1:0", PublicIPs: []string{"127.0.0.2"}, Loopback: true})
	defer s.Close()
	c := newClient(t)
	r := &router{to: c}
	p, err := s.NewPeer(PeerConfig{Signal: r.signal(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	offer, _ := c.pc.CreateOffer(nil)
	_ = c.pc.SetLocalDescription(offer)
	if err := p.Offer(c.pc.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		var addrs []string
		for _, cand := range c.cands {
			if cand != nil {
				addrs = append(addrs, strings.Fields(cand.Candidate)[4])
			}
		}
		c.mu.Unlock()
		if len(addrs) > 0 {
			for _, a := range addrs {
				if a != "127.0.0.2" {
					t.Fatalf("candidate address %s, want 127.0.0.2 (%v)", a, addrs)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no candidate")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sctpMetadata returns what c's SCTP association negotiated.
func (c *client) sctpMetadata(t *testing.T) webrtc.SCTPTransportMetadata {
	t.Helper()
	m, ok := c.pc.SCTP().Metadata()
	if !ok {
		t.Fatal("no SCTP association")
	}
	return m
}

// TestSCTPChecksumsAreSkippedWhereBothAgree: SCTP packets go without their
// CRC32c (RFC 9653) to a side that accepts them: the server and a client
// with ClientSettings, both ways; to a client that does not accept them
// (Pion's default, as in the other tests) the server still sends them with
// checksums, and state flows either way.
func TestSCTPChecksumsAreSkippedWhereBothAgree(t *testing.T) {
	base := waitBase()
	s := New(Config{UDP: "127.0.0.1:0", Loopback: true})
	se := ClientSettings()
	Loopback(&se)
	for _, tc := range []struct {
		name string
		c    *client
		want bool
	}{
		{"ClientSettings", newClientWith(t, DataAPI(se)), true},
		{"Pion's defaults", newClient(t), false},
	} {
		r := &router{to: tc.c}
		p, err := s.NewPeer(PeerConfig{Signal: r.signal(t)})
		if err != nil {
			t.Fatal(err)
		}
		tc.c.connect(t, p)
		sent := false
		deadline := time.Now().Add(5 * time.Second)
		for !sent {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no state on the channel", tc.name)
			}
			p.SendState([]byte{0x81, 0xa1, 't'}, []byte{0x01})
			select {
			case got := <-tc.c.got:
				sent = bytes.Equal(got, []byte{0x81, 0xa1, 't', 0x01})
			case <-time.After(50 * time.Millisecond):
			}
		}
		st := tc.c.sctpMetadata(t)
		// The server accepts packets without checksums from every client,
		// and sends them only to one that accepts them.
		if !st.ZeroChecksumSendingEnabled || st.ZeroChecksumReceivingEnabled != tc.want {
			t.Errorf("%s: client sends without checksums %t, receives without them %t; want true, %t", tc.name,
				st.ZeroChecksumSendingEnabled, st.ZeroChecksumReceivingEnabled, tc.want)
		}
		p.Close()
		_ = tc.c.pc.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
}
