// Package peer is a WebRTC test peer built on Pion: it joins a call over
// the signaling WebSocket, connects to every other peer of the call, echoes
// what arrives on its DataChannels, sends a generated Opus audio track and
// counts what it sent and received.
//
// Roles follow the contract: the newcomer offers to the peers listed in its
// welcome; when offers collide (glare), the peer whose id sorts lower is the
// polite one and gives way. Pion cannot roll back a local offer, so the
// polite side drops its PeerConnection and answers on a fresh one.
//
// Join returns a running Peer; all its methods are safe for concurrent use. Close ends every goroutine and PeerConnection it started.
package peer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/internal/rtc"
	"github.com/tickwire/tickwire/wire"
)

// Errors of Join and WaitOpen.
var (
	// ErrRefused: the server answered the join with an error message.
	ErrRefused = errors.New("peer: join refused")
	// ErrClosed: the Peer has been closed.
	ErrClosed = errors.New("peer: closed")
)

// Config says which call to join and how.
type Config struct {
	Server string // ws://host:port, optionally with a path (default /ws/signal); http(s) works too
	Call   string // call id
	Name   string // display name, 1-24 characters
	Token  string // sent as join.token when set

	// ICEServers replaces the list from the welcome when non-nil.
	ICEServers []webrtc.ICEServer
	// AllInterfaces lets ICE use every interface. By default only loopback
	// host candidates on 127.0.0.1 are gathered, which works offline.
	AllInterfaces bool
	// NoAudio leaves out the audio track.
	NoAudio bool
	// OfferOnJoined makes the peer offer to peers that join after it too,
	// so both sides offer at once and glare must be resolved.
	OfferOnJoined bool
	// Logf receives diagnostics; nil discards them.
	Logf func(format string, args ...any)

	// beforeOffer, when set, runs after an offer is made and before it is
	// sent (tests use it to make offers collide).
	beforeOffer func(to string)
}

// Peer is one joined participant of a call.
type Peer struct {
	cfg    Config
	id     string
	marker []byte // prefix of this peer's own DataChannel messages
	ice    []webrtc.ICEServer
	track  *webrtc.TrackLocalStaticSample // nil with NoAudio

	ws  *websocket.Conn
	wmu sync.Mutex // guards writes to ws (one writer at a time)

	mu       sync.Mutex         // guards remotes, changed, closed, glares, restarts and the remote fields marked so
	remotes  map[string]*remote // by peer id; kept after a peer leaves, for Stats
	changed  chan struct{}      // closed and replaced whenever a channel opens or a state changes
	closed   bool
	glares   int
	restarts int

	seq        atomic.Uint64
	quit       chan struct{} // closed by Close
	readerDone chan struct{} // closed when the signaling reader has ended
	closeOnce  sync.Once
	wg         sync.WaitGroup // audio writer and RTP readers
}

// Join connects to the signaling server, joins cfg.Call and starts
// connecting to the peers already there. ctx bounds only the handshake.
func Join(ctx context.Context, cfg Config) (*Peer, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	u, err := wire.WebSocketURL(cfg.Server, wire.PathSignal)
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("peer: dial %s: %w", u, err)
	}
	welcome, err := handshake(ctx, ws, cfg)
	if err != nil {
		_ = ws.Close()
		return nil, err
	}
	p := &Peer{
		cfg:        cfg,
		id:         welcome.ID,
		marker:     []byte("tickwire-peer:" + welcome.ID + ":"),
		ice:        cfg.ICEServers,
		ws:         ws,
		remotes:    make(map[string]*remote),
		changed:    make(chan struct{}),
		quit:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	if p.ice == nil {
		p.ice = rtc.ICEServers(welcome.ICEServers)
	}
	if !cfg.NoAudio {
		if p.track, err = newAudioTrack(p.id); err != nil {
			_ = ws.Close()
			return nil, err
		}
		p.wg.Add(1)
		go p.sendAudio()
	}
	go p.readSignals(welcome.Peers)
	return p, nil
}

// handshake sends the join and waits for the welcome, for as long as ctx
// allows.
func handshake(ctx context.Context, ws *websocket.Conn, cfg Config) (wire.SignalMessage, error) {
	ws.SetReadLimit(1 << 20)
	stop := context.AfterFunc(ctx, func() { _ = ws.SetReadDeadline(time.Now()) })
	m, err := joinAndWait(ws, cfg)
	if !stop() {
		return m, fmt.Errorf("peer: join: %w", ctx.Err())
	}
	return m, err
}

// joinAndWait sends the join and reads until the welcome or an error.
func joinAndWait(ws *websocket.Conn, cfg Config) (wire.SignalMessage, error) {
	var m wire.SignalMessage
	join, _ := json.Marshal(wire.SignalMessage{Type: wire.SignalTypeJoin, Call: cfg.Call, Name: cfg.Name, Token: cfg.Token})
	_ = ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, join); err != nil {
		return m, fmt.Errorf("peer: send join: %w", err)
	}
	for m.Type != wire.SignalTypeWelcome {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return m, fmt.Errorf("peer: waiting for welcome: %w", err)
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return m, fmt.Errorf("peer: bad message from server: %w", err)
		}
		if m.Type == wire.SignalTypeError {
			return m, fmt.Errorf("%w: %s: %s", ErrRefused, m.Code, m.Message)
		}
	}
	return m, nil
}

// ID is the id the server gave this peer.
func (p *Peer) ID() string { return p.id }

// Done is closed when the signaling connection has ended (Close, or the
// server closed it). PeerConnections already up keep running until Close.
func (p *Peer) Done() <-chan struct{} { return p.readerDone }

// readSignals is the signaling reader and the only goroutine that
// negotiates: it offers to the welcome's peers, then handles messages until
// the WebSocket fails.
func (p *Peer) readSignals(peers []wire.SignalPeer) {
	defer close(p.readerDone)
	for _, sp := range peers {
		p.offer(p.remote(sp.ID, sp.Name))
	}
	for {
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			select {
			case <-p.quit:
			default:
				p.cfg.Logf("peer %s: signaling ended: %v", p.id, err)
			}
			return
		}
		var m wire.SignalMessage
		if err := json.Unmarshal(data, &m); err != nil {
			p.cfg.Logf("peer %s: bad message from server: %v", p.id, err)
			continue
		}
		p.handle(m)
	}
}

func (p *Peer) handle(m wire.SignalMessage) {
	switch m.Type {
	case wire.SignalTypePeerJoined:
		r := p.remote(m.ID, m.Name)
		if p.cfg.OfferOnJoined {
			p.offer(r)
		}
	case wire.SignalTypePeerLeft:
		if r := p.known(m.ID); r != nil {
			r.left = true
			p.replacePC(r, nil)
		}
	case wire.SignalTypeOffer:
		p.onOffer(p.remote(m.From, ""), m.SDP)
	case wire.SignalTypeAnswer:
		if r := p.known(m.From); r != nil {
			p.onAnswer(r, m.SDP)
		}
	case wire.SignalTypeICECandidate:
		if r := p.known(m.From); r != nil {
			p.onCandidate(r, m.Candidate)
		}
	case wire.SignalTypeError:
		p.cfg.Logf("peer %s: server error %s: %s", p.id, m.Code, m.Message)
	}
}

// remote returns the remote peer with id, creating it on first contact.
func (p *Peer) remote(id, name string) *remote {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.remotes[id]
	if r == nil {
		r = &remote{id: id, polite: p.id < id, start: time.Now()}
		p.remotes[id] = r
	}
	if name != "" {
		r.name = name
	}
	return r
}

// known returns the remote peer with id, or nil.
func (p *Peer) known(id string) *remote {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.remotes[id]
}

// write sends one signaling message.
func (p *Peer) write(m wire.SignalMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return p.ws.WriteMessage(websocket.TextMessage, data)
}

// notifyLocked wakes WaitOpen callers. p.mu must be held.
func (p *Peer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Send sends one message of this peer's own on every open DataChannel and
// returns how many it sent. Each remote echoes it back; echoes are counted
// in Stats.
func (p *Peer) Send() int {
	msg := strconv.AppendUint(slices.Clone(p.marker), p.seq.Add(1), 10)
	type target struct {
		r  *remote
		dc *webrtc.DataChannel
	}
	var open []target
	p.mu.Lock()
	for _, r := range p.remotes {
		if r.dc != nil {
			open = append(open, target{r, r.dc})
		}
	}
	p.mu.Unlock()
	sent := 0
	for _, t := range open {
		if t.r.send(t.dc, msg) {
			sent++
		}
	}
	return sent
}

// onMessage echoes a message from a remote, or counts the echo of one of
// this peer's own.
func (p *Peer) onMessage(r *remote, dc *webrtc.DataChannel, msg webrtc.DataChannelMessage) {
	r.msgsIn.Add(1)
	if bytes.HasPrefix(msg.Data, p.marker) {
		r.echoes.Add(1)
		return
	}
	if msg.IsString {
		if dc.SendText(string(msg.Data)) == nil {
			r.msgsOut.Add(1)
		}
		return
	}
	r.send(dc, msg.Data)
}

// WaitOpen waits until DataChannels to at least n remote peers are open.
func (p *Peer) WaitOpen(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		open := 0
		for _, r := range p.remotes {
			if r.dc != nil {
				open++
			}
		}
		changed, closed := p.changed, p.closed
		p.mu.Unlock()
		switch {
		case open >= n:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("peer: %d of %d channels open: %w", open, n, ctx.Err())
		}
	}
}

// Stats are a Peer's counts at one moment.
type Stats struct {
	ID       string
	Remotes  []RemoteStats // by remote id, including peers that have left
	Glares   int           // offers received while this peer's own offer was pending
	Restarts int           // PeerConnections dropped to give way in a glare

	// Sums over Remotes.
	MessagesIn, MessagesOut, Echoes, RTPIn, RTPOut uint64
}

// RemoteStats are the counts for one remote peer.
type RemoteStats struct {
	ID, Name string
	State    string        // PeerConnection state ("new", "connected", ..., "closed")
	Connect  time.Duration // from first contact to connected; 0 until then
	Open     time.Duration // from first contact to DataChannel open; 0 until then

	MessagesIn  uint64 // DataChannel messages received, echoes included
	MessagesOut uint64 // DataChannel messages sent, echoes included
	Echoes      uint64 // this peer's own messages that came back
	RTPIn       uint64 // RTP packets received
	RTPOut      uint64 // RTP packets sent
}

// Stats returns the current counts.
func (p *Peer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{ID: p.id, Glares: p.glares, Restarts: p.restarts}
	for _, r := range p.remotes {
		rs := r.statsLocked()
		st.Remotes = append(st.Remotes, rs)
		st.MessagesIn += rs.MessagesIn
		st.MessagesOut += rs.MessagesOut
		st.Echoes += rs.Echoes
		st.RTPIn += rs.RTPIn
		st.RTPOut += rs.RTPOut
	}
	slices.SortFunc(st.Remotes, func(a, b RemoteStats) int { return cmp.Compare(a.ID, b.ID) })
	return st
}

// Close leaves the call, closes the signaling connection and every
// PeerConnection, and waits for the goroutines the Peer started. It is safe
// to call more than once.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		_ = p.write(wire.SignalMessage{Type: wire.SignalTypeLeave})
		p.mu.Lock()
		p.closed = true
		p.notifyLocked()
		p.mu.Unlock()
		close(p.quit)
		p.wmu.Lock()
		_ = p.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		p.wmu.Unlock()
		_ = p.ws.Close()
		<-p.readerDone // no PeerConnection is created after this
		p.mu.Lock()
		remotes := slices.Collect(maps.Values(p.remotes))
		p.mu.Unlock()
		for _, r := range remotes {
			p.replacePC(r, nil)
		}
		p.wg.Wait()
	})
	return nil
}
