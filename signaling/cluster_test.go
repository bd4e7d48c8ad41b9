package signaling

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/wire"
)

// clusterConfig has a short heartbeat, a TTL no stall of a loaded test
// machine reaches, and a long GatherTimeout (answers on an in-process bus
// come at once).
func clusterConfig(cfg Config) Config {
	if cfg.HeartbeatEvery == 0 {
		cfg.HeartbeatEvery = 50 * time.Millisecond
	}
	if cfg.NodeTTL == 0 {
		// Long enough that a test process stalled by a loaded machine
		// loses no node; tests of a node's death set their own.
		cfg.NodeTTL = 5 * time.Second
	}
	if cfg.GatherTimeout == 0 {
		cfg.GatherTimeout = 3 * time.Second
	}
	return cfg
}

// newBus returns an in-process bus shared by the nodes of a test, closed
// after them.
func newBus(t *testing.T) *bus.Local {
	b := bus.NewLocal()
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// newNode runs a signaling Server with node id node on b.
func newNode(t *testing.T, b bus.Bus, node string, cfg Config) *testServer {
	t.Helper()
	cfg = clusterConfig(cfg)
	cfg.Bus, cfg.Node = b, node
	return newTestServer(t, cfg)
}

// newNodes runs n nodes n1..nn on one in-process bus.
func newNodes(t *testing.T, n int, cfg Config) []*testServer {
	t.Helper()
	b := newBus(t)
	var nodes []*testServer
	for i := range n {
		nodes = append(nodes, newNode(t, b, "n"+strconv.Itoa(i+1), cfg))
	}
	return nodes
}

func peerIDs(ps []wire.SignalPeer) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

func expectJoined(t *testing.T, c *client, id, name string) {
	t.Helper()
	if m := c.recv(); m.Type != wire.SignalTypePeerJoined || m.ID != id || m.Name != name {
		t.Fatalf("got %+v, want peer-joined %s %s", m, id, name)
	}
}

func expectLeft(t *testing.T, c *client, id string) {
	t.Helper()
	if m := c.recv(); m.Type != wire.SignalTypePeerLeft || m.ID != id {
		t.Fatalf("got %+v, want peer-left %s", m, id)
	}
}

func TestClusterWelcomeListsEveryNodesPeers(t *testing.T) {
	b := newBus(t)
	n1, n2 := newNode(t, b, "n1", Config{}), newNode(t, b, "n2", Config{})
	a, wa := n1.join(t, "call-1", "ana")
	bo, wb := n2.join(t, "call-1", "bo")
	if len(wb.Peers) != 1 || wb.Peers[0] != (wire.SignalPeer{ID: wa.ID, Name: "ana"}) {
		t.Fatalf("bo's welcome lists %+v, want ana", wb.Peers)
	}
	expectJoined(t, a, wb.ID, "bo")

	// A node started later learns the others and waits for their peers.
	n3 := newNode(t, b, "n3", Config{})
	cy, wc := n3.join(t, "call-1", "cy")
	want := []string{wa.ID, wb.ID}
	slices.Sort(want)
	if got := peerIDs(wc.Peers); !slices.Equal(got, want) {
		t.Fatalf("cy's welcome lists %v, want %v (sorted)", got, want)
	}
	expectJoined(t, a, wc.ID, "cy")
	expectJoined(t, bo, wc.ID, "cy")
	// A peer on the same node as the newcomer too.
	dee, wd := n3.join(t, "call-1", "dee")
	if len(wd.Peers) != 3 {
		t.Fatalf("dee's welcome lists %+v", wd.Peers)
	}
	for _, c := range []*client{a, bo, cy} {
		expectJoined(t, c, wd.ID, "dee")
	}
	st := n3.Stats()
	if st.Peers != 2 || st.Calls != 1 {
		t.Fatalf("n3 stats %+v, want its own 2 peers", st)
	}

	// Relays both ways between nodes, `from` set by the sender's node.
	a.send([]byte(`{"type":"offer","to":"` + wc.ID + `","sdp":"v=0 a","from":"` + wb.ID + `"}`))
	if m := cy.recv(); m.Type != wire.SignalTypeOffer || m.From != wa.ID || m.SDP != "v=0 a" || m.To != wc.ID {
		t.Fatalf("relayed offer: %+v", m)
	}
	cy.send(wire.SignalMessage{Type: wire.SignalTypeAnswer, To: wa.ID, SDP: "v=0 c", From: wb.ID})
	if m := a.recv(); m.Type != wire.SignalTypeAnswer || m.From != wc.ID || m.SDP != "v=0 c" {
		t.Fatalf("relayed answer: %+v", m)
	}
	cand := `{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0}`
	bo.send([]byte(`{"type":"ice-candidate","to":"` + wd.ID + `","candidate":` + cand + `}`))
	if m := dee.recv(); m.Type != wire.SignalTypeICECandidate || m.From != wb.ID || string(m.Candidate) != cand {
		t.Fatalf("relayed candidate: %+v", m)
	}
	checkRelay(t, dee, wd.ID, bo, wb.ID)
	waitFor(t, func() bool { return n1.Stats().Relayed == 1 && n2.Stats().Relayed == 1 && n3.Stats().Relayed == 2 })

	// Peers of another call, on any node, and ids nobody has are unknown.
	_, wo := n2.join(t, "call-2", "other")
	for _, to := range []string{wo.ID, wa.ID, "0123456789abcdef"} {
		a.send(offer(to, "v=0"))
		a.expectError(wire.SignalErrUnknownPeer)
	}
	checkRelay(t, a, wa.ID, cy, wc.ID)
}

func TestClusterLeaveAndDrop(t *testing.T) {
	nodes := newNodes(t, 3, Config{})
	a, _ := nodes[0].join(t, "c", "a")
	b, wb := nodes[1].join(t, "c", "b")
	c, wc := nodes[2].join(t, "c", "c")
	expectJoined(t, a, wb.ID, "b")
	expectJoined(t, a, wc.ID, "c")
	expectJoined(t, b, wc.ID, "c")

	b.send(wire.SignalMessage{Type: wire.SignalTypeLeave})
	b.expectClose(wire.SignalCloseNormal)
	expectLeft(t, a, wb.ID)
	expectLeft(t, c, wb.ID)

	_ = c.ws.NetConn().Close() // gone without a leave
	expectLeft(t, a, wc.ID)
	waitFor(t, func() bool { return nodes[1].Stats().Calls == 0 && nodes[2].Stats().Peers == 0 })

	// The call lives on with a newcomer on a node that had none left.
	d, wd := nodes[1].join(t, "c", "d")
	if len(wd.Peers) != 1 {
		t.Fatalf("d's welcome lists %+v, want a alone", wd.Peers)
	}
	expectJoined(t, a, wd.ID, "d")
	checkRelay(t, d, wd.ID, a, wd.Peers[0].ID)
}

// Two peers joining one call at the same moment on two nodes end up
// knowing each other: listed in a welcome or announced, never neither; a
// peer listed in a welcome is not announced again.
func TestClusterConcurrentJoins(t *testing.T) {
	nodes := newNodes(t, 2, Config{})
	both := 0
	for round := range 25 {
		callID := fmt.Sprintf("race-%d", round)
		x, y := nodes[0].dial(t), nodes[1].dial(t)
		var wg sync.WaitGroup
		for i, c := range []*client{x, y} {
			wg.Go(func() {
				data := `{"type":"join","call":"` + callID + `","name":"p` + strconv.Itoa(i) + `"}`
				_ = c.ws.WriteMessage(websocket.TextMessage, []byte(data))
			})
		}
		wg.Wait()
		wx, wy := x.recv(), y.recv()
		if wx.Type != wire.SignalTypeWelcome || wy.Type != wire.SignalTypeWelcome {
			t.Fatalf("round %d: got %+v and %+v, want welcomes", round, wx, wy)
		}
		xListsY := slices.Contains(peerIDs(wx.Peers), wy.ID)
		yListsX := slices.Contains(peerIDs(wy.Peers), wx.ID)
		switch {
		case !xListsY && !yListsX:
			t.Fatalf("round %d: neither welcome lists the other", round)
		case xListsY && yListsX:
			both++
		case !xListsY:
			expectJoined(t, x, wy.ID, "p1")
		default:
			expectJoined(t, y, wx.ID, "p0")
		}
		// The next thing each gets is the other's offer: no late
		// peer-joined for a peer it already knows.
		checkRelay(t, x, wx.ID, y, wy.ID)
		checkRelay(t, y, wy.ID, x, wx.ID)
		x.send(wire.SignalMessage{Type: wire.SignalTypeLeave})
		y.send(wire.SignalMessage{Type: wire.SignalTypeLeave})
	}
	t.Logf("both welcomes listed the other in %d of 25 rounds", both)
}

// Peers on a node that shuts down are announced as left at once; those of
// a node that goes silent, within NodeTTL.
func TestClusterNodeShutdownAndDeath(t *testing.T) {
	const ttl = 2 * time.Second
	b := newBus(t)
	cut := &cutBus{Bus: b}
	n1 := newNode(t, b, "n1", Config{NodeTTL: ttl})
	n2 := newNode(t, b, "n2", Config{NodeTTL: ttl})
	n3 := newNode(t, cut, "n3", Config{NodeTTL: ttl})
	a, _ := n1.join(t, "c", "a")
	_, wb := n2.join(t, "c", "b")
	_, wc := n3.join(t, "c", "c")
	expectJoined(t, a, wb.ID, "b")
	expectJoined(t, a, wc.ID, "c")

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- n2.Shutdown(ctx) }() // waits for b's close handshake
	expectLeft(t, a, wb.ID)
	if d := time.Since(start); d > ttl/2 {
		t.Errorf("peer-left after a shutdown took %v, want at once (well under the TTL %v)", d, ttl)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}

	cut.cut.Store(true) // n3 says nothing more and hears nothing
	start = time.Now()
	expectLeft(t, a, wc.ID)
	if d := time.Since(start); d < ttl/2 || d > ttl+3*time.Second {
		t.Errorf("peer-left of a silent node after %v, want about the TTL %v", d, ttl)
	}
	// The dead node's peer is unknown now; a newcomer does not wait for
	// the dead node.
	a.send(offer(wc.ID, "v=0"))
	a.expectError(wire.SignalErrUnknownPeer)
	start = time.Now()
	_, wd := n1.join(t, "c", "d")
	if len(wd.Peers) != 1 || time.Since(start) > 2*time.Second {
		t.Fatalf("welcome %+v after %v", wd.Peers, time.Since(start))
	}
}

func TestClusterCallFull(t *testing.T) {
	nodes := newNodes(t, 3, Config{MaxPeers: 3})
	a, wa := nodes[0].join(t, "full", "a")
	b, wb := nodes[0].join(t, "full", "b")
	_, wc := nodes[1].join(t, "full", "c")
	expectJoined(t, a, wb.ID, "b")
	expectJoined(t, a, wc.ID, "c")
	expectJoined(t, b, wc.ID, "c")

	// Refused on a node that knows the call, and on one that has no peer
	// of it; nobody hears of the refused peers.
	for _, n := range []*testServer{nodes[1], nodes[2]} {
		c := n.dial(t)
		c.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "full", Name: "late"})
		c.expectError(wire.SignalErrCallFull)
		c.expectClose(wire.SignalCloseCallFull)
	}
	checkRelay(t, a, wa.ID, b, wb.ID) // the next message b gets is a's
	if st := nodes[2].Stats(); st.Peers != 0 || st.Calls != 0 {
		t.Fatalf("n3 stats %+v after refusing", st)
	}

	// A place freed on one node is free on every node.
	b.send(wire.SignalMessage{Type: wire.SignalTypeLeave})
	expectLeft(t, a, wb.ID)
	_, wd := nodes[2].join(t, "full", "d")
	if len(wd.Peers) != 2 {
		t.Fatalf("d's welcome lists %+v", wd.Peers)
	}
	expectJoined(t, a, wd.ID, "d")
}

// A relay for a peer of another node is published for that node only, on
// a subject made of hex tokens.
func TestClusterRelayGoesToOneNode(t *testing.T) {
	nodes := newNodes(t, 3, Config{})
	var subjects []string
	var mu sync.Mutex
	sub, err := nodes[0].cfg.Bus.Subscribe(toSubject+".>", func(m *bus.Msg) {
		mu.Lock()
		subjects = append(subjects, m.Subject)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	a, wa := nodes[0].join(t, "c", "a")
	b, wb := nodes[1].join(t, "c", "b")
	c, wc := nodes[2].join(t, "c", "c")
	expectJoined(t, a, wb.ID, "b")
	expectJoined(t, a, wc.ID, "c")
	expectJoined(t, b, wc.ID, "c")
	checkRelay(t, a, wa.ID, b, wb.ID)
	checkRelay(t, c, wc.ID, b, wb.ID)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(subjects) >= 2 })
	time.Sleep(50 * time.Millisecond) // room for a stray one
	mu.Lock()
	want := toSubject + "." + token("n2")
	if len(subjects) != 2 || subjects[0] != want || subjects[1] != want {
		t.Errorf("relays published on %v, want twice %s", subjects, want)
	}
	mu.Unlock()

	// Any call or node id makes a valid subject.
	for _, id := range []string{"a.b", "*", ">", "x y", "\t"} {
		for _, subject := range []string{callSubject(id), nodeSubject(id), relaySubject(id)} {
			if err := nodes[0].cfg.Bus.Publish(subject, nil); err != nil || strings.Contains(subject, " ") {
				t.Fatalf("subject %q for %q: %v", subject, id, err)
			}
		}
	}
}

// What reaches a newcomer while its node waits for the other nodes comes
// after its welcome, and only as news.
func TestClusterHeldUntilWelcome(t *testing.T) {
	b := newBus(t)
	n1 := newNode(t, b, "n1", Config{})
	newNode(t, &slowBus{Bus: b, delay: 300 * time.Millisecond}, "n2", Config{})
	a, wa := n1.join(t, "c", "a")

	bo := n1.dial(t)
	start := time.Now()
	bo.send(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: "c", Name: "bo"})
	j := a.recv() // at once, while bo waits for n2
	if j.Type != wire.SignalTypePeerJoined || j.Name != "bo" {
		t.Fatalf("got %+v, want peer-joined bo", j)
	}
	a.send(offer(j.ID, "v=0 early"))
	cy, wc := n1.join(t, "c", "cy")
	if got := peerIDs(wc.Peers); len(got) != 2 || !slices.Contains(got, j.ID) {
		t.Fatalf("cy's welcome lists %v, want a and bo", got)
	}

	wb := bo.recv()
	if wb.Type != wire.SignalTypeWelcome || wb.ID != j.ID || !slices.Equal(peerIDs(wb.Peers), []string{wa.ID}) {
		t.Fatalf("bo got %+v, want a welcome listing a alone", wb)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("bo's welcome after %v: n2's answer was not awaited", d)
	}
	var got []string
	for range 2 {
		m := bo.recv()
		got = append(got, m.Type+" "+m.ID+m.From)
	}
	slices.Sort(got)
	want := []string{"offer " + wa.ID, "peer-joined " + wc.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after its welcome bo got %v, want %v", got, want)
	}
	checkRelay(t, cy, wc.ID, bo, wb.ID)
}

// A node that comes back with the same id before its TTL has none of its
// old peers.
func TestClusterNodeRestart(t *testing.T) {
	b := newBus(t)
	n1 := newNode(t, b, "n1", Config{NodeTTL: 10 * time.Second})
	old := &cutBus{Bus: b}
	n2 := newNode(t, old, "n2", Config{NodeTTL: 10 * time.Second})
	a, _ := n1.join(t, "c", "a")
	_, wb := n2.join(t, "c", "b")
	expectJoined(t, a, wb.ID, "b")
	old.cut.Store(true)
	start := time.Now()
	newNode(t, b, "n2", Config{NodeTTL: 10 * time.Second})
	expectLeft(t, a, wb.ID)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("old peer left after %v, want at once", d)
	}
}

// A starting node's hello that reaches a node late (each subscription has
// its own queue) does not take away the peers that joined the new node
// meanwhile.
func TestClusterLateHelloKeepsNewPeers(t *testing.T) {
	b := newBus(t)
	n1 := newNode(t, b, "n1", Config{})
	late := &lateHelloBus{Bus: b, release: make(chan struct{}), handled: make(chan struct{})}
	n2 := newNode(t, late, "n2", Config{})
	released := sync.OnceFunc(func() { close(late.release) })
	t.Cleanup(released) // before n2 stops
	a, _ := n1.join(t, "c", "a")
	bo, wb := n2.join(t, "c", "bo")
	expectJoined(t, a, wb.ID, "bo")

	n3 := newNode(t, b, "n3", Config{}) // n1 answers its hello; n2 holds it
	cy, wc := n3.join(t, "c", "cy")
	expectJoined(t, a, wc.ID, "cy")
	expectJoined(t, bo, wc.ID, "cy")
	released()
	<-late.handled
	// The next thing bo hears is cy's offer, not that cy left.
	checkRelay(t, cy, wc.ID, bo, wb.ID)
}

// lateHelloBus is a node's view of a shared bus on which hellos after
// the node's own start wait for release; handled is closed once the first
// of them has been handled.
type lateHelloBus struct {
	bus.Bus
	release, handled chan struct{}
	once             sync.Once
}

func (b *lateHelloBus) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	if subject != helloSubject {
		return b.Bus.Subscribe(subject, h)
	}
	return b.Bus.Subscribe(subject, func(m *bus.Msg) {
		<-b.release
		h(m)
		b.once.Do(func() { close(b.handled) })
	})
}

// Close leaves the shared bus open.
func (b *lateHelloBus) Close() error { return nil }

// A node alone on its bus welcomes at once.
func TestClusterAlone(t *testing.T) {
	n := newNodes(t, 1, Config{GatherTimeout: 5 * time.Second})[0]
	start := time.Now()
	a, _ := n.join(t, "c", "a")
	b, wb := n.join(t, "c", "b")
	expectJoined(t, a, wb.ID, "b")
	checkRelay(t, b, wb.ID, a, wb.Peers[0].ID)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("two joins took %v", d)
	}
}

// cutBus is a node's view of a shared bus that can be cut, as when the
// node dies: from then on it neither sends nor receives.
type cutBus struct {
	bus.Bus
	cut atomic.Bool
}

func (c *cutBus) Publish(subject string, data []byte) error {
	if c.cut.Load() {
		return nil
	}
	return c.Bus.Publish(subject, data)
}

func (c *cutBus) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	return c.Bus.Subscribe(subject, func(m *bus.Msg) {
		if !c.cut.Load() {
			h(m)
		}
	})
}

func (c *cutBus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if c.cut.Load() {
		return nil, bus.ErrNoResponders
	}
	return c.Bus.Request(ctx, subject, data)
}

// Close leaves the shared bus open.
func (c *cutBus) Close() error { return nil }

// slowBus is a node's view of a shared bus on which each message about a
// call reaches the node delay late (and heartbeats on time), in order.
type slowBus struct {
	bus.Bus
	delay time.Duration
}

func (b *slowBus) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	return b.Bus.Subscribe(subject, func(m *bus.Msg) {
		if strings.HasPrefix(m.Subject, castSubject+".call.") {
			time.Sleep(b.delay)
		}
		h(m)
	})
}

// Close leaves the shared bus open.
func (b *slowBus) Close() error { return nil }
