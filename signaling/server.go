// Package signaling owns WebRTC signaling calls: peers join a call over the
// signaling WebSocket, get server-assigned ids, learn who else is in the
// call, and have their offers, answers and ICE candidates relayed to peers
// of the same call. It enforces the contract's limits (frame and SDP size,
// peers per call, relay rate, join deadline), hands out ICE servers with
// ephemeral TURN REST credentials, and never interprets SDP.
//
// A Server is safe for concurrent use: ServeHTTP runs one handler goroutine
// per connection, and Stats, ICEHandler and Shutdown may be called from any
// goroutine. It never imports a WebRTC stack.
//
// # Several nodes
//
// With Config.Bus set, the Servers of several nodes form one signaling
// service: peers of a call connected to different nodes see each other
// exactly as if they were on one node. Each node keeps, for every call
// with a peer of its own, the peers of the other nodes (id, name, node).
// Membership travels on one broadcast subject per call
// ("tickwire.sig.cast.call.<hex call id>"): a node announces a local
// peer's join and leave there, and answers every join with its own peers
// of that call. A newcomer is added to its call first and announced; its
// welcome waits until every node known to be alive has answered (or
// Config.GatherTimeout has passed) and lists the local peers and every
// answered peer; what reaches it meanwhile (peer-joined, peer-left,
// relays) is held and delivered after the welcome, without repeating
// the peers the welcome lists. Because a node adds its peer before
// announcing it and answers from its current peers, of two peers joining
// at once on two nodes at least one lists the other in its welcome (when
// the answers come within GatherTimeout; a node that does not answer in
// time may be missing from a welcome).
//
// Offers, answers and candidates for a peer of another node are published
// to that node only ("tickwire.sig.to.<hex node id>"), with `from` set
// by the sender's node. A `to` that is no known peer of the call answers
// `unknown-peer` at once; a relay for a peer that has just left on its
// node is dropped there. Nodes know each other from heartbeats
// ("tickwire.sig.cast.node.<hex node id>", every Config.HeartbeatEvery)
// and from a hello request a node makes when it starts (which also clears
// the peers of an earlier node with its id); a node silent for
// Config.NodeTTL is dead and its peers are announced as peer-left, and a
// node that shuts down says goodbye at once. `call-full` counts the peers
// of every node: the joining node checks what it knows, and the other
// nodes refuse an announced join that would overfill the call; two joins
// racing for the last place may both be refused, and a join refused after
// its announcement is followed by peer-left where it was seen. Peer ids
// are 64 random bits, checked against the peers the node knows.
package signaling

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/internal/transport"
	"github.com/tickwire/tickwire/wire"
)

// ErrUnauthorized is what an Authenticate hook may return to refuse a
// client; any non-nil error refuses it.
var ErrUnauthorized = errors.New("signaling: unauthorized")

// Config sets a Server's ICE servers, limits and hooks. Zero fields take the
// defaults of the contract.
type Config struct {
	STUN       []string      // STUN URLs, e.g. "stun:stun.example.org:3478"
	TURN       []string      // TURN URLs, e.g. "turn:turn.example.org:3478?transport=udp"
	TURNSecret string        // coturn's static-auth-secret; empty = TURN entries carry no credentials
	TURNTTL    time.Duration // lifetime of TURN credentials (24h)

	MaxSDP      int           // bytes of one SDP before `too-big` (64 KiB)
	MaxFrame    int64         // bytes of one frame before close 1009 (72 KiB)
	MaxPeers    int           // peers per call before `call-full` (16)
	RelayRate   rate.Limit    // relayed messages per second and peer (50)
	RelayBurst  int           // burst of relayed messages per peer (200)
	JoinTimeout time.Duration // time allowed for the first message, a `join` (5s)

	// Transport is the WebSocket configuration; its ReadLimit and Text are
	// set from MaxFrame and true, the rest (ping interval, pong wait, queue,
	// allowed origins) is used as given.
	Transport transport.Config

	// Authenticate, when set, admits or refuses a client. It gets the HTTP
	// request (headers, ?token=) and the `join.token` ("" for GET /api/ice
	// and when the join carries none) and returns the user id, which may be
	// empty, and when the client's token expires (zero: never); a peer is
	// closed with 4001 at that time. An error answers `unauthorized` and
	// closes with 4001 (HTTP 401 on /api/ice). Nil admits everyone as a
	// guest.
	Authenticate func(r *http.Request, token string) (user string, expires time.Time, err error)

	// Bus joins the signaling Servers of several nodes (see the package
	// doc); nil serves the peers of this node only.
	Bus bus.Bus
	// Node is this node's id on the bus, unique among the nodes (a random
	// id when empty).
	Node string
	// HeartbeatEvery is how often this node tells the others it is alive
	// (1s); NodeTTL how long a silent node's peers stay in their calls
	// (3s; a few heartbeats); GatherTimeout how long a welcome waits for
	// the other nodes' peers, and a starting node for their list (1s).
	HeartbeatEvery time.Duration
	NodeTTL        time.Duration
	GatherTimeout  time.Duration
}

func (c Config) withDefaults() Config {
	c.STUN = slices.Clone(c.STUN)
	c.TURN = slices.Clone(c.TURN)
	if c.TURNTTL <= 0 {
		c.TURNTTL = 24 * time.Hour
	}
	if c.MaxSDP <= 0 {
		c.MaxSDP = wire.SignalMaxSDP
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = wire.SignalMaxFrame
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = wire.SignalMaxPeers
	}
	if c.RelayRate <= 0 {
		c.RelayRate = wire.SignalRelayRate
	}
	if c.RelayBurst <= 0 {
		c.RelayBurst = wire.SignalRelayBurst
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = 5 * time.Second
	}
	if c.HeartbeatEvery <= 0 {
		c.HeartbeatEvery = time.Second
	}
	if c.NodeTTL <= 0 {
		c.NodeTTL = 3 * time.Second
	}
	if c.GatherTimeout <= 0 {
		c.GatherTimeout = time.Second
	}
	if c.Node == "" {
		c.Node = newID()
	}
	c.Transport.ReadLimit = c.MaxFrame
	c.Transport.Text = true
	return c
}

// conn is what the Server needs of a WebSocket; *transport.Conn has it.
// Read is called by the connection's handler goroutine only.
type conn interface {
	Read() ([]byte, error)
	Send(msg []byte) error
	// Reply answers the peer's own message; it slows the reader down
	// rather than dropping the answer (reader goroutine only).
	Reply(msg []byte) error
	Close(code int, reason string)
	Done() <-chan struct{}
}

// Server runs signaling calls. Create it with New.
type Server struct {
	cfg Config

	mu      sync.Mutex        // guards calls, conns, closed, cluster and every call's and peer's fields marked so
	calls   map[string]*call  // by call id; a call exists while it has peers of this node
	conns   map[conn]struct{} // every open signaling connection, joined or not
	closed  bool              // Shutdown has begun; new connections are refused
	cluster *cluster          // the other nodes; nil without a Bus
	wg      sync.WaitGroup    // one count per handler in conns
	errs    atomic.Uint64     // error messages sent to clients
	relays  atomic.Uint64     // messages relayed
}

// call is a set of peers that may signal each other.
type call struct {
	id     string
	peers  map[string]*peer  // this node's, by peer id; guarded by Server.mu
	remote map[string]member // other nodes', by peer id; guarded by Server.mu
}

// peer is one joined connection. Only its handler goroutine uses limit.
type peer struct {
	id, name string
	call     *call
	c        conn
	limit    *rate.Limiter
	expiry   *time.Timer // closes the peer when its token expires; nil without one

	// Until the welcome is sent (guarded by Server.mu): the peers it will
	// list, by id, with their names, what arrived for the peer meanwhile,
	// and the other nodes' answers awaited.
	pending bool
	view    map[string]string
	queue   []held
	gather  *gather
}

// held is a message for a peer that has no welcome yet.
type held struct {
	kind int    // heldJoined, heldLeft or heldRelay
	id   string // the peer that joined or left, or the sender
	msg  []byte
}

const (
	heldJoined = iota
	heldLeft
	heldRelay
)

// maxHeld is how many messages may wait for a peer's welcome; past it the
// peer is closed as a slow consumer.
const maxHeld = 128

// New returns a Server with cfg's zero fields set to the defaults. With a
// Bus it joins the other nodes' Servers there, and works alone when the bus
// refuses it (when it is closed).
func New(cfg Config) *Server {
	s := &Server{
		cfg:   cfg.withDefaults(),
		calls: make(map[string]*call),
		conns: make(map[conn]struct{}),
	}
	if s.cfg.Bus != nil {
		if k := startCluster(s); k != nil {
			s.mu.Lock()
			s.cluster = k
			s.mu.Unlock()
		}
	}
	return s
}

// Stats are a Server's counts at one moment.
type Stats struct {
	Conns   int    // open signaling WebSockets, joined or not
	Calls   int    // calls with at least one peer
	Peers   int    // joined peers over all calls
	Relayed uint64 // offers, answers and candidates handed to this node's peers since New
	Errors  uint64 // `error` messages sent since New
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Conns: len(s.conns), Calls: len(s.calls), Relayed: s.relays.Load(), Errors: s.errs.Load()}
	for _, cl := range s.calls {
		st.Peers += len(cl.peers)
	}
	return st
}

// ServeHTTP upgrades the request to a signaling WebSocket (mount it at
// GET /ws/signal) and serves it until the client leaves or goes. After
// Shutdown it answers 503.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "server shutting down")
		return
	}
	c, err := transport.Upgrade(w, r, s.cfg.Transport)
	if err != nil {
		return // the upgrader has answered
	}
	s.serve(r, c)
}

// Shutdown tells the other nodes this node is gone, closes every signaling
// WebSocket with 1001, refuses new ones, and waits until their handlers
// have ended or ctx is done. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	conns := slices.Collect(maps.Keys(s.conns))
	k := s.cluster
	s.mu.Unlock()
	if k != nil {
		k.stop()
	}
	for _, c := range conns {
		c.Close(wire.SignalCloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { // ends when the last handler does
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve is one connection's handler: it reads until the connection fails,
// which every way out (leave, a fatal error, Shutdown, a timeout) leads to,
// and returns once the connection's writer has ended too.
func (s *Server) serve(r *http.Request, c conn) {
	defer func() { <-c.Done() }()
	if !s.register(c) {
		c.Close(wire.SignalCloseGoingAway, "server shutting down")
		drain(c)
		return
	}
	defer s.unregister(c)

	joinTimer := time.AfterFunc(s.cfg.JoinTimeout, func() {
		s.fail(c, wire.SignalErrUnauthorized, "no join in time", wire.SignalCloseUnauthorized)
	})
	defer joinTimer.Stop()

	var p *peer
	closing := false // a close has been queued; later messages are ignored
	for {
		data, err := c.Read()
		if err != nil {
			break
		}
		switch {
		case closing:
		case p == nil:
			if !joinTimer.Stop() {
				closing = true // the deadline passed while this message was on its way
				break
			}
			p = s.join(r, c, data)
			closing = p == nil
		default:
			closing = s.handle(p, data)
		}
	}
	if p != nil {
		if p.expiry != nil {
			p.expiry.Stop()
		}
		s.leave(p)
	}
}

// drain reads until the connection fails.
func drain(c conn) {
	for {
		if _, err := c.Read(); err != nil {
			return
		}
	}
}

func (s *Server) register(c conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) unregister(c conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// join handles the first message. It returns the new peer, or nil when it
// has refused the client and queued a close.
func (s *Server) join(r *http.Request, c conn, data []byte) *peer {
	m, err := wire.DecodeSignal(data)
	if err != nil || m.Type != wire.SignalTypeJoin {
		s.fail(c, wire.SignalErrBadMessage, "the first message must be a valid join", wire.SignalCloseBadMessage)
		return nil
	}
	var expires time.Time
	if s.cfg.Authenticate != nil {
		var err error
		if _, expires, err = s.cfg.Authenticate(r, m.Token); err != nil {
			s.fail(c, wire.SignalErrUnauthorized, "bad or missing token", wire.SignalCloseUnauthorized)
			return nil
		}
	}
	p := &peer{name: m.Name, c: c, limit: rate.NewLimiter(s.cfg.RelayRate, s.cfg.RelayBurst)}
	if !expires.IsZero() {
		p.expiry = time.AfterFunc(time.Until(expires), func() {
			s.fail(c, wire.SignalErrUnauthorized, "token expired", wire.SignalCloseUnauthorized)
		})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close(wire.SignalCloseGoingAway, "server shutting down")
		return nil
	}
	cl := s.calls[m.Call]
	if cl == nil {
		cl = &call{id: m.Call, peers: make(map[string]*peer), remote: make(map[string]member)}
		s.calls[m.Call] = cl
	}
	if len(cl.peers)+len(cl.remote) >= s.cfg.MaxPeers {
		s.fail(c, wire.SignalErrCallFull, "the call is full", wire.SignalCloseCallFull)
		return nil
	}
	for p.id == "" || cl.peers[p.id] != nil || cl.remote[p.id] != (member{}) {
		p.id = newID()
	}
	p.pending = true
	p.view = make(map[string]string, len(cl.peers)+len(cl.remote))
	joined := encode(wire.SignalMessage{Type: wire.SignalTypePeerJoined, ID: p.id, Name: p.name})
	for _, o := range cl.peers {
		p.view[o.id] = o.name
		s.sendLocked(o, heldJoined, p.id, joined)
	}
	for id, r := range cl.remote {
		p.view[id] = r.name
	}
	p.call = cl
	cl.peers[p.id] = p
	if s.cluster != nil {
		s.cluster.announceLocked(p)
	}
	if p.gather == nil {
		// Queued before the lock is released, so the welcome precedes
		// anything relayed to the new peer.
		s.welcomeLocked(p)
	}
	return p
}

// welcomeLocked sends p its welcome, listing the peers of its view and
// the other nodes' answers, then what was held for it; or refuses it with
// `call-full` when the answers fill the call. It does nothing once p has
// its welcome or has left.
func (s *Server) welcomeLocked(p *peer) {
	if !p.pending || p.call.peers[p.id] != p {
		return
	}
	known, full := p.view, false
	if g := p.gather; g != nil {
		p.gather = nil
		if g.timer != nil {
			g.timer.Stop()
		}
		for id, name := range g.members {
			known[id] = name
		}
		full = g.full
	}
	delete(known, p.id)
	if full || len(known) >= s.cfg.MaxPeers {
		s.removeLocked(p)
		s.fail(p.c, wire.SignalErrCallFull, "the call is full", wire.SignalCloseCallFull)
		return
	}
	welcome := wire.SignalMessage{
		Type:       wire.SignalTypeWelcome,
		ID:         p.id,
		Call:       p.call.id,
		Peers:      make([]wire.SignalPeer, 0, len(known)),
		ICEServers: s.iceServers(p.id, time.Now()),
	}
	for id, name := range known {
		welcome.Peers = append(welcome.Peers, wire.SignalPeer{ID: id, Name: name})
	}
	slices.SortFunc(welcome.Peers, func(a, b wire.SignalPeer) int { return cmp.Compare(a.ID, b.ID) })
	_ = p.c.Send(encode(welcome))
	queue := p.queue
	p.pending, p.view, p.queue = false, nil, nil
	// What was held, told as news only when the welcome did not say it.
	for _, h := range queue {
		_, listed := known[h.id]
		switch {
		case h.kind == heldJoined && listed, h.kind == heldLeft && !listed:
			continue
		case h.kind == heldLeft:
			delete(known, h.id)
		default:
			known[h.id] = ""
		}
		s.sendLocked(p, h.kind, h.id, h.msg)
	}
}

// sendLocked sends msg to p, or holds it until p's welcome.
func (s *Server) sendLocked(p *peer, kind int, id string, msg []byte) {
	if p.pending {
		if len(p.queue) >= maxHeld {
			p.c.Close(wire.ClosePolicy, "slow consumer")
			return
		}
		p.queue = append(p.queue, held{kind: kind, id: id, msg: msg})
		return
	}
	if p.c.Send(msg) == nil && kind == heldRelay {
		s.relays.Add(1)
	}
}

// handle handles one message of a joined peer and reports whether it has
// queued a close.
func (s *Server) handle(p *peer, data []byte) bool {
	m, err := wire.DecodeSignal(data)
	switch {
	case errors.Is(err, wire.ErrSignalSyntax):
		s.fail(p.c, wire.SignalErrBadMessage, "not a JSON object", wire.SignalCloseBadMessage)
		return true
	case err != nil:
		s.reject(p.c, wire.SignalErrBadMessage, err.Error())
		return false
	}
	switch m.Type {
	case wire.SignalTypeJoin:
		s.reject(p.c, wire.SignalErrBadMessage, "already joined")
	case wire.SignalTypeLeave:
		s.leave(p)
		p.c.Close(wire.SignalCloseNormal, "leave")
		return true
	default:
		s.relay(p, m)
	}
	return false
}

// relay forwards an offer, answer or ice-candidate to its `to`, with `from`
// set to the sender, or drops it with an error to the sender.
func (s *Server) relay(p *peer, m wire.SignalMessage) {
	if !p.limit.Allow() {
		s.reject(p.c, wire.SignalErrRateLimited, "too many messages")
		return
	}
	if len(m.SDP) > s.cfg.MaxSDP {
		s.reject(p.c, wire.SignalErrTooBig, "sdp too big")
		return
	}
	m.From = p.id
	data := encode(m)
	s.mu.Lock()
	cl := p.call
	if cl.peers[p.id] != p { // refused after its join: it is closing
		s.mu.Unlock()
		return
	}
	if to := cl.peers[m.To]; to != nil && to != p {
		s.sendLocked(to, heldRelay, p.id, data)
		s.mu.Unlock()
		return
	}
	r, ok := cl.remote[m.To]
	k := s.cluster
	s.mu.Unlock()
	if !ok {
		s.reject(p.c, wire.SignalErrUnknownPeer, "no peer "+m.To+" in this call")
		return
	}
	k.relay(r.node, relayMsg{Call: cl.id, To: m.To, From: p.id, Msg: data})
}

// leave takes p out of its call and tells the others. Later calls for the
// same peer do nothing.
func (s *Server) leave(p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(p)
}

// removeLocked is leave with s.mu held.
func (s *Server) removeLocked(p *peer) {
	cl := p.call
	if cl.peers[p.id] != p {
		return
	}
	delete(cl.peers, p.id)
	if g := p.gather; g != nil && g.timer != nil {
		g.timer.Stop()
	}
	p.gather, p.queue = nil, nil
	if s.cluster != nil && !s.closed {
		s.cluster.leaveLocked(cl.id, p.id)
	}
	if len(cl.peers) == 0 {
		delete(s.calls, cl.id)
		return
	}
	left := encode(wire.SignalMessage{Type: wire.SignalTypePeerLeft, ID: p.id})
	for _, o := range cl.peers {
		s.sendLocked(o, heldLeft, p.id, left)
	}
}

// reject answers a message with an error; the connection stays. Only the
// reader goroutine calls it.
func (s *Server) reject(c conn, code, message string) {
	s.errs.Add(1)
	_ = c.Reply(encode(wire.SignalError(code, message)))
}

// fail sends an error message, then closes with closeCode. Timers call it
// too, so it never waits.
func (s *Server) fail(c conn, code, message string, closeCode int) {
	s.errs.Add(1)
	_ = c.Send(encode(wire.SignalError(code, message)))
	c.Close(closeCode, code)
}

// encode marshals a message built from validated input, which cannot fail.
func encode(m wire.SignalMessage) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic("signaling: encode: " + err.Error())
	}
	return b
}

// newID returns a random peer id of 16 hex digits.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
