package player

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/tickwire/tickwire/internal/rtc"
	"github.com/tickwire/tickwire/wire"
)

// Transports that Transport reports.
const (
	TransportUDP = "udp" // state arrives on the WebRTC state channel
	TransportTCP = "tcp" // state arrives on the WebSocket
)

// ErrNoRTC is returned by Offer and KillChannel for a client dialed
// without Options.RTC.
var ErrNoRTC = errors.New("player: dialed without Options.RTC")

// ErrRTCRefused is returned by Offer after the server answered an offer
// with `unsupported`.
var ErrRTCRefused = errors.New("player: the server does not take state over WebRTC")

// rtcPeer is the client's side of the state channel.
type rtcPeer struct {
	c    *Client
	api  *webrtc.API
	ice  []webrtc.ICEServer
	keep time.Duration

	mu       sync.Mutex   // guards the fields below
	cur      *rtc.Offerer // the newest offer's connection, nil when none
	gen      int          // offers sent
	answered int          // answers (or refusals) received
	refused  bool
	closed   bool

	open     atomic.Bool  // cur's channel is open
	lastSent atomic.Int64 // unix ns of the newest message sent on the channel
	keepDone chan struct{}
}

// newRTCPeer builds the Pion API of a client; ICE servers come from the
// options or else from the server's /api/ice.
func newRTCPeer(ctx context.Context, c *Client, o Options) (*rtcPeer, error) {
	se := rtc.ClientSettings()
	if o.RTCSettings != nil {
		se = *o.RTCSettings
	}
	if o.RTCLoopback {
		rtc.Loopback(&se)
	}
	servers := o.ICEServers
	if servers == nil {
		servers = fetchICE(ctx, o)
	}
	keep := o.RTCKeepalive
	if keep == 0 {
		keep = 250 * time.Millisecond
	}
	r := &rtcPeer{c: c, ice: servers, keep: keep, keepDone: make(chan struct{}),
		api: rtc.DataAPI(se)}
	go r.keepalive()
	return r, nil
}

// fetchICE asks the server's /api/ice for its ICE servers; none on error.
func fetchICE(ctx context.Context, o Options) []webrtc.ICEServer {
	u := o.URL
	switch {
	case strings.HasPrefix(u, "ws://"):
		u = "http://" + strings.TrimPrefix(u, "ws://")
	case strings.HasPrefix(u, "wss://"):
		u = "https://" + strings.TrimPrefix(u, "wss://")
	}
	u = strings.TrimSuffix(strings.SplitN(u, "?", 2)[0], wire.PathPlay) + "/api/ice"
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	for k, v := range o.Header {
		req.Header[k] = v
	}
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body wire.SignalICEResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return rtc.ICEServers(body.ICEServers)
}

// Offer offers a new state channel to the server, replacing the current
// one (the contract lets a client offer again after a fallback). It
// returns once the offer is sent; Transport tells when state arrives on the
// channel.
func (c *Client) Offer() error {
	r := c.rtc
	if r == nil {
		return ErrNoRTC
	}
	r.mu.Lock()
	if r.closed || r.refused {
		r.mu.Unlock()
		if r.refused {
			return ErrRTCRefused
		}
		return errClosed
	}
	old := r.take()
	r.mu.Unlock()
	if old != nil {
		_ = old.PC.GracefulClose()
	}
	var rc *rtc.Offerer
	rc, err := rtc.NewOfferer(r.api, webrtc.Configuration{ICEServers: r.ice}, func(m wire.ClientMessage) error {
		if _, offer := m.(*wire.RTCOffer); !offer && !r.current(rc) {
			return nil // a candidate of a superseded offer
		}
		return c.send(m)
	})
	if err != nil {
		return err
	}
	dc := rc.DC
	dc.OnOpen(func() {
		if r.current(rc) {
			r.lastSent.Store(time.Now().UnixNano())
			r.open.Store(true)
		}
	})
	dc.OnClose(func() {
		if r.current(rc) {
			r.open.Store(false)
		}
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) { c.receive(m.Data, true) })
	rc.PC.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if (st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed) && r.current(rc) {
			r.open.Store(false)
		}
	})
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = rc.PC.GracefulClose()
		return errClosed
	}
	r.cur = rc
	r.gen++
	r.mu.Unlock()
	return rc.Send()
}

// errClosed is what Offer returns after Close.
var errClosed = errors.New("player: connection closed")

// take clears the current connection, marking the channel not open, and
// returns it (nil when none) for the caller to close outside the lock; the
// caller holds mu.
func (r *rtcPeer) take() *rtc.Offerer {
	old := r.cur
	r.cur = nil
	r.open.Store(false)
	return old
}

func (r *rtcPeer) current(rc *rtc.Offerer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur == rc
}

// matched returns the current connection when the answers received so far
// match the offers sent, that is when the newest answer is the current
// offer's; else nil (an answer or candidate of an older offer).
func (r *rtcPeer) matched() *rtc.Offerer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answered != r.gen {
		return nil
	}
	return r.cur
}

// answer applies the server's answer, if it is to the current offer, and
// the candidates that came before it.
func (r *rtcPeer) answer(sdp string) {
	r.mu.Lock()
	r.answered++
	r.mu.Unlock()
	rc := r.matched()
	if rc == nil {
		return
	}
	_ = rc.Answer(sdp)
}

// candidate adds one of the server's candidates to the current connection,
// queued until its answer is set; those of older offers are dropped.
func (r *rtcPeer) candidate(cand *wire.ICECandidate) {
	rc := r.matched()
	if rc == nil || cand == nil {
		return
	}
	rc.Candidate(cand)
}

// refuse records the server's `unsupported`: the client stays on the
// WebSocket.
func (r *rtcPeer) refuse(string) {
	r.mu.Lock()
	r.answered++
	r.refused = true
	old := r.take()
	r.mu.Unlock()
	if old != nil {
		go func() { _ = old.PC.Close() }() // not on the reader: it may wait on callbacks
	}
}

// sendInput sends an encoded input on the channel and reports true, or
// reports false when the channel is not open.
func (r *rtcPeer) sendInput(frame []byte) bool {
	if !r.open.Load() {
		return false
	}
	r.mu.Lock()
	rc := r.cur
	r.mu.Unlock()
	if rc == nil || rc.DC.Send(frame) != nil {
		return false
	}
	r.lastSent.Store(time.Now().UnixNano())
	r.c.chSent.Add(1)
	r.c.sent.Add(1)
	return true
}

// keepalive sends an `ack` of the newest tick received on a channel that
// has been silent for the keepalive period, so that the server keeps
// sending state on it. (An `input` repeating the newest seq would do as
// well, unless it overtook the real input of that seq, which the server
// would then ignore.)
func (r *rtcPeer) keepalive() {
	defer close(r.keepDone)
	if r.keep < 0 {
		<-r.c.quit
		return
	}
	t := time.NewTicker(r.keep / 2)
	defer t.Stop()
	for {
		select {
		case <-r.c.quit:
			return
		case <-t.C:
		}
		if !r.open.Load() || time.Since(time.Unix(0, r.lastSent.Load())) < r.keep {
			continue
		}
		latest := r.c.latest.Load()
		if latest == nil {
			continue
		}
		if frame, err := wire.Encode(&wire.Ack{N: latest.N}); err == nil {
			r.sendInput(frame)
		}
	}
}

// close closes the connection and waits for the keepalive to end; the
// reader calls it as it ends.
func (r *rtcPeer) close() {
	r.mu.Lock()
	r.closed = true
	old := r.take()
	r.mu.Unlock()
	if old != nil {
		_ = old.PC.GracefulClose()
	}
	<-r.keepDone
}

// KillChannel closes the state channel's peer connection at once, as a
// network failure would end it, without offering again: the server sends
// state on the WebSocket again. Tests use it; Offer brings the channel
// back.
func (c *Client) KillChannel() error {
	r := c.rtc
	if r == nil {
		return ErrNoRTC
	}
	r.mu.Lock()
	old := r.take()
	r.mu.Unlock()
	if old != nil {
		return old.PC.GracefulClose()
	}
	return nil
}

// Transport tells where state frames reach the client now: TransportUDP
// while the state channel is open and the newest state frame came on it,
// else TransportTCP.
func (c *Client) Transport() string {
	if c.rtc != nil && c.rtc.open.Load() && c.viaChan.Load() {
		return TransportUDP
	}
	return TransportTCP
}

// ChannelOpen reports whether the state channel is open (with
// Options.RTC).
func (c *Client) ChannelOpen() bool { return c.rtc != nil && c.rtc.open.Load() }

// SendChannelRaw sends one message on the open state channel as it is
// (tests use it for inputs out of order); it fails when the channel is not
// open.
func (c *Client) SendChannelRaw(frame []byte) error {
	if c.rtc == nil {
		return ErrNoRTC
	}
	if !c.rtc.sendInput(frame) {
		return errors.New("player: the state channel is not open")
	}
	return nil
}
