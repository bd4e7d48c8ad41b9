package signaling

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/wire"
)

// Subjects of signaling between nodes (see the package doc). Call and node
// ids are hex-encoded into subject tokens, so any id makes a valid subject.
const (
	castSubject  = "tickwire.sig.cast"  // + ".call.<call>" or ".node.<node>": to every node
	toSubject    = "tickwire.sig.to"    // + ".<node>": relays for that node's peers
	helloSubject = "tickwire.sig.hello" // request of a starting node: who is there?
)

func callSubject(call string) string  { return castSubject + ".call." + token(call) }
func nodeSubject(node string) string  { return castSubject + ".node." + token(node) }
func relaySubject(node string) string { return toSubject + "." + token(node) }

// token encodes an id as a subject token.
func token(id string) string { return hex.EncodeToString([]byte(id)) }

// Types of castMsg.
const (
	castHeartbeat = "hb"      // the node is alive
	castBye       = "bye"     // the node is leaving: forget its peers
	castJoin      = "join"    // ID (Name) joined Call on the node
	castMembers   = "members" // the node's peers of Call, answering ID's join
	castLeave     = "leave"   // ID left Call on the node
)

// castMsg is a message to every node (JSON).
type castMsg struct {
	Type  string            `json:"t"`
	Node  string            `json:"node"`
	Run   string            `json:"run,omitempty"` // the sending node's run (see cluster.runID)
	Call  string            `json:"call,omitempty"`
	ID    string            `json:"id,omitempty"`
	Name  string            `json:"name,omitempty"`
	Peers []wire.SignalPeer `json:"peers,omitempty"`
	Full  bool              `json:"full,omitempty"` // members: ID's join would overfill the call
}

// relayMsg is an offer, answer or candidate for a peer of another node;
// Msg is the message as that peer gets it, `from` set.
type relayMsg struct {
	Call string          `json:"call"`
	To   string          `json:"to"`
	From string          `json:"from"`
	Msg  json.RawMessage `json:"msg"`
}

// helloMsg is a starting node's request (Node, Run) and an answer to it
// (the nodes the answering node knows, itself included).
type helloMsg struct {
	Node  string   `json:"node,omitempty"`
	Run   string   `json:"run,omitempty"`
	Nodes []string `json:"nodes,omitempty"`
}

// member is a peer of another node, and the run of that node it joined.
type member struct{ name, node, run string }

// gather is a newcomer's wait for the other nodes' peers.
type gather struct {
	waiting map[string]bool   // nodes yet to answer
	members map[string]string // peers they answered with: id -> name
	full    bool              // a node said the call has no room
	timer   *time.Timer       // ends the wait; nil when nobody is awaited
}

// cluster is a Server's part in the signaling of several nodes. Its bus
// handlers and its heartbeat loop end with stop.
type cluster struct {
	s    *Server
	b    bus.Bus
	node string
	// runID tells this start of the node from an earlier one with the same
	// id: a hello from a new run forgets the peers of the older ones, and
	// only theirs (a hello that reaches a node late must not take away
	// the peers that joined the new run meanwhile).
	runID string
	subs  []bus.Subscription
	quit  chan struct{} // closed by stop: the heartbeat loop ends
	done  chan struct{} // closed when it has
	once  sync.Once

	nodes map[string]time.Time // other nodes, when last heard of; guarded by s.mu
}

// startCluster subscribes s to the other nodes, learns which nodes there
// are and starts the heartbeat loop; it returns nil when the bus refuses.
func startCluster(s *Server) *cluster {
	k := &cluster{
		s: s, b: s.cfg.Bus, node: s.cfg.Node, runID: newID(),
		quit: make(chan struct{}), done: make(chan struct{}), nodes: make(map[string]time.Time),
	}
	if !k.subscribe(castSubject+".>", k.onCast) || !k.subscribe(relaySubject(k.node), k.onRelay) {
		k.unsubscribe()
		return nil
	}
	// Ask before answering others, so that nobody but the other nodes
	// answers; no answer at all means this node is alone.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.GatherTimeout)
	data, err := k.b.Request(ctx, helloSubject, marshal(helloMsg{Node: k.node, Run: k.runID}))
	cancel()
	var h helloMsg
	if err == nil && json.Unmarshal(data, &h) == nil {
		s.mu.Lock()
		for _, n := range h.Nodes {
			k.touchLocked(n)
		}
		s.mu.Unlock()
	}
	if !k.subscribe(helloSubject, k.onHello) {
		k.unsubscribe()
		return nil
	}
	k.publish(nodeSubject(k.node), castMsg{Type: castHeartbeat, Node: k.node})
	go k.run()
	return k
}

func (k *cluster) subscribe(subject string, h bus.Handler) bool {
	sub, err := k.b.Subscribe(subject, h)
	if err != nil {
		return false
	}
	k.subs = append(k.subs, sub)
	return true
}

func (k *cluster) unsubscribe() {
	for _, sub := range k.subs {
		_ = sub.Unsubscribe()
	}
}

// stop says goodbye to the other nodes, ends the heartbeat loop and the
// subscriptions. Later calls do nothing.
func (k *cluster) stop() {
	k.once.Do(func() {
		k.publish(nodeSubject(k.node), castMsg{Type: castBye, Node: k.node})
		close(k.quit)
		<-k.done
		k.unsubscribe()
	})
}

// run sends heartbeats and forgets the nodes that have sent nothing for
// NodeTTL, until stop.
func (k *cluster) run() {
	defer close(k.done)
	tick := time.NewTicker(k.s.cfg.HeartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-k.quit:
			return
		case <-tick.C:
		}
		k.publish(nodeSubject(k.node), castMsg{Type: castHeartbeat, Node: k.node})
		now := time.Now()
		k.s.mu.Lock()
		for n, seen := range k.nodes {
			if now.Sub(seen) > k.s.cfg.NodeTTL {
				k.dropNodeLocked(n)
			}
		}
		k.s.mu.Unlock()
	}
}

// marshal encodes a message of the nodes, which cannot fail.
func marshal(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic("signaling: encode: " + err.Error())
	}
	return data
}

// publish sends m to every node; a failure is the bus's (closed, or
// disconnected from NATS), and the other nodes catch up by the TTL.
func (k *cluster) publish(subject string, m castMsg) {
	m.Run = k.runID
	_ = k.b.Publish(subject, marshal(m))
}

// relay sends an offer, answer or candidate to node, for one of its peers.
func (k *cluster) relay(node string, m relayMsg) {
	_ = k.b.Publish(relaySubject(node), marshal(m))
}

// announceLocked tells the other nodes that p has joined, and has p wait
// for the answers of the nodes known to be alive, for up to GatherTimeout.
// It leaves p.gather nil when there is nobody to wait for.
func (k *cluster) announceLocked(p *peer) {
	k.publish(callSubject(p.call.id), castMsg{Type: castJoin, Node: k.node, Call: p.call.id, ID: p.id, Name: p.name})
	if len(k.nodes) == 0 {
		return
	}
	g := &gather{waiting: make(map[string]bool, len(k.nodes)), members: make(map[string]string)}
	for n := range k.nodes {
		g.waiting[n] = true
	}
	p.gather = g
	g.timer = time.AfterFunc(k.s.cfg.GatherTimeout, func() {
		k.s.mu.Lock()
		defer k.s.mu.Unlock()
		if p.gather == g {
			k.s.welcomeLocked(p)
		}
	})
}

// leaveLocked tells the other nodes that peer id has left call.
func (k *cluster) leaveLocked(call, id string) {
	k.publish(callSubject(call), castMsg{Type: castLeave, Node: k.node, Call: call, ID: id})
}

// onHello answers a starting node with the nodes this one knows. Peers
// still known of an earlier run of that node (restarted before its TTL)
// are gone.
func (k *cluster) onHello(m *bus.Msg) {
	var h helloMsg
	if json.Unmarshal(m.Data, &h) != nil || h.Node == "" || h.Node == k.node {
		return
	}
	k.s.mu.Lock()
	if k.s.closed {
		k.s.mu.Unlock()
		return
	}
	k.forgetEarlierRunsLocked(h.Node, h.Run)
	k.touchLocked(h.Node)
	nodes := append(slices.Collect(maps.Keys(k.nodes)), k.node)
	k.s.mu.Unlock()
	_ = m.Respond(marshal(helloMsg{Nodes: nodes}))
}

// onCast handles what the other nodes tell every node, in the order each
// of them sent it.
func (k *cluster) onCast(m *bus.Msg) {
	var c castMsg
	if json.Unmarshal(m.Data, &c) != nil || c.Node == "" || c.Node == k.node {
		return
	}
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	switch c.Type {
	case castHeartbeat:
		k.touchLocked(c.Node)
	case castBye:
		k.dropNodeLocked(c.Node)
	case castJoin:
		k.touchLocked(c.Node)
		answer := castMsg{Type: castMembers, Node: k.node, Call: c.Call, ID: c.ID}
		if cl := s.calls[c.Call]; cl != nil {
			answer.Full = !k.addLocked(cl, c.ID, member{name: c.Name, node: c.Node, run: c.Run}, true)
			for _, p := range cl.peers {
				answer.Peers = append(answer.Peers, wire.SignalPeer{ID: p.id, Name: p.name})
			}
		}
		k.publish(callSubject(c.Call), answer)
	case castMembers:
		k.touchLocked(c.Node)
		cl := s.calls[c.Call]
		if cl == nil {
			return
		}
		for _, sp := range c.Peers {
			k.addLocked(cl, sp.ID, member{name: sp.Name, node: c.Node, run: c.Run}, false)
		}
		p := cl.peers[c.ID]
		if p == nil || p.gather == nil {
			return
		}
		g := p.gather
		for _, sp := range c.Peers {
			g.members[sp.ID] = sp.Name
		}
		g.full = g.full || c.Full
		delete(g.waiting, c.Node)
		if len(g.waiting) == 0 {
			s.welcomeLocked(p)
		}
	case castLeave:
		if cl := s.calls[c.Call]; cl != nil {
			k.forgetLocked(cl, c.ID, c.Node)
		}
	}
}

// onRelay hands a relayed message to a peer of this node; one that has
// left meanwhile is dropped.
func (k *cluster) onRelay(m *bus.Msg) {
	var r relayMsg
	if json.Unmarshal(m.Data, &r) != nil {
		return
	}
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if cl := s.calls[r.Call]; cl != nil && !s.closed {
		if to := cl.peers[r.To]; to != nil {
			s.sendLocked(to, heldRelay, r.From, r.Msg)
		}
	}
}

// touchLocked records that node is alive now.
func (k *cluster) touchLocked(node string) {
	if node != "" && node != k.node {
		k.nodes[node] = time.Now()
	}
}

// addLocked records a peer of another node in cl and announces it to
// cl's peers. With limit, it refuses (false) a peer that would overfill
// the call.
func (k *cluster) addLocked(cl *call, id string, m member, limit bool) bool {
	if _, ok := cl.remote[id]; ok || cl.peers[id] != nil {
		return true
	}
	if limit && len(cl.peers)+len(cl.remote) >= k.s.cfg.MaxPeers {
		return false
	}
	cl.remote[id] = m
	joined := encode(wire.SignalMessage{Type: wire.SignalTypePeerJoined, ID: id, Name: m.name})
	for _, p := range cl.peers {
		k.s.sendLocked(p, heldJoined, id, joined)
	}
	return true
}

// forgetLocked takes the peer id of node out of cl and announces it.
func (k *cluster) forgetLocked(cl *call, id, node string) {
	if r, ok := cl.remote[id]; !ok || r.node != node {
		return
	}
	delete(cl.remote, id)
	left := encode(wire.SignalMessage{Type: wire.SignalTypePeerLeft, ID: id})
	for _, p := range cl.peers {
		k.s.sendLocked(p, heldLeft, id, left)
	}
}

// forgetEarlierRunsLocked forgets the peers of node that joined a run of
// it other than run.
func (k *cluster) forgetEarlierRunsLocked(node, run string) {
	for _, cl := range k.s.calls {
		for id, r := range cl.remote {
			if r.node == node && r.run != run {
				k.forgetLocked(cl, id, node)
			}
		}
	}
}

// dropNodeLocked forgets a node that has left or died: its peers leave
// their calls, and welcomes stop waiting for it.
func (k *cluster) dropNodeLocked(node string) {
	delete(k.nodes, node)
	for _, cl := range slices.Collect(maps.Values(k.s.calls)) {
		for id, r := range cl.remote {
			if r.node == node {
				k.forgetLocked(cl, id, node)
			}
		}
		for _, p := range slices.Collect(maps.Values(cl.peers)) {
			if g := p.gather; g != nil && g.waiting[node] {
				delete(g.waiting, node)
				if len(g.waiting) == 0 {
					k.s.welcomeLocked(p)
				}
			}
		}
	}
}
