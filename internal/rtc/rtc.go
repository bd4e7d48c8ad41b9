// Package rtc is the server side of players' state channels: WebRTC
// DataChannels labelled `state` (unordered, never retransmitted) that carry
// a player's state frames instead of its WebSocket (contract 1.1, "State
// over WebRTC"). It is the only server package that imports Pion.
//
// A Service owns one UDP socket, shared by every peer connection through
// an ICE UDP mux, and the Pion API built on it: data only, with an empty
// media engine and no interceptors. It gathers host candidates on that one
// port (announcing Config.PublicIPs instead behind a 1:1 NAT) and uses no
// STUN or TURN server itself: clients take theirs from /api/ice, and one
// behind a restrictive NAT reaches the server through its TURN relay.
//
// A Peer is one player's side: it takes offers (each replacing the
// previous connection), answers and trickles candidates through its
// Signal callback, hands what arrives on the channel to Receive, and sends
// state frames. SendState never blocks: it copies the frame into a
// one-slot mailbox (latest wins) that the peer's writer goroutine sends.
// SendState reports false, and the caller sends the frame on the
// WebSocket, while the channel is not open, its connection has failed or
// closed or ICE is disconnected, or the frame is larger than
// Config.MaxFrame; while the channel's buffered amount (bytes sent but not
// yet acknowledged by the client's SCTP) is over Config.MaxBuffered; and,
// for a client that has sent anything on the channel, while nothing has
// arrived on it for Config.Idle. The buffered amount grows when the
// client's acknowledgements are lost or late, as when its machine is busy:
// SCTP then holds new data until a retransmission timeout of a second or
// more, and the WebSocket, whose acknowledgements the client's kernel
// sends, carries the state meanwhile instead of the frames being lost. A
// client that keeps its channel alive (an `ack` or `input` at least every
// Idle, as Tickwire's clients do) thus gets its state back on the
// WebSocket within about a second of the path dying; one that never sends
// on the channel, as the contract allows, keeps its state on the channel
// until ICE finds the path dead (Disconnected).
//
// Large frames: an unordered channel without retransmissions loses a
// message when any one of its SCTP fragments is lost, and a fragmented
// message can stall an unordered stream on a lossy path (pion/sctp #138).
// Pion fragments user messages above 1,200 bytes (its 1,228-byte SCTP MTU
// minus headers), so frames above MaxFrame (default 1,100 bytes) go on the
// reliable WebSocket instead: in practice keyframes of large rooms, while
// every delta and the snapshots of ordinary rooms take the channel. A
// negative MaxFrame sends every frame on the channel, which the server
// does unless told otherwise (serve -rtc-max-frame), as the protocol
// says. Measured on a Pion virtual network losing 20% of packets
// (loss_test.go): about 80% of 500-byte frames arrive, mostly never more
// than about 130 ms apart (a few runs in a hundred stall for about 2 s
// when the client's last acknowledgements are lost; see rtoMax),
// while of 3,000-byte frames anywhere from none to half arrive, with
// stalls of up to seconds.
//
// Service and Peer methods are safe for concurrent use. Every goroutine a
// Peer starts ends with Peer.Close, and Service.Close closes every peer and
// the socket.
package rtc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// Defaults of Config.
const (
	DefaultMaxFrame    = 1100
	DefaultIdle        = time.Second
	DefaultMaxBuffered = 4 << 10
)

// ErrClosed is returned by a Peer or Service used after Close.
var ErrClosed = errors.New("rtc: closed")

// Config sets up a Service. Zero fields take the defaults.
type Config struct {
	// UDP is the address of the one UDP port of every peer, opened by
	// Listen or, without a call to Listen, by the first offer.
	UDP string
	// PublicIPs are announced in host candidates instead of the
	// addresses of the machine (a server behind 1:1 NAT).
	PublicIPs []string
	// Loopback keeps ICE on loopback addresses only (tests on a machine
	// that also has other interfaces).
	Loopback bool
	// MaxFrame is the largest state frame sent on a channel (1,100 bytes;
	// see the package comment); negative: no limit.
	MaxFrame int
	// Idle is how long a channel the client has sent on may stay silent
	// before state frames go back to the WebSocket (1s); they return to
	// the channel with the next message from the client.
	Idle time.Duration
	// MaxBuffered is the buffered amount of a channel above which state
	// frames go on the WebSocket instead (4 KiB: a few frames; more would
	// only add latency).
	MaxBuffered uint64
	// Disconnected, Failed and Keepalive are ICE's timeouts: a
	// connection is disconnected after 3s without traffic, failed after
	// 6s, and sends keepalives every 500ms (zero values take these).
	Disconnected, Failed, Keepalive time.Duration
	Logger                          *slog.Logger
	// Net is the network the port is opened on (nil: the machine's); tests
	// give a Pion virtual network, with loss and delay.
	Net transport.Net
}

func (c Config) withDefaults() Config {
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.Disconnected <= 0 {
		c.Disconnected = 3 * time.Second
	}
	if c.Failed <= 0 {
		c.Failed = 6 * time.Second
	}
	if c.Keepalive <= 0 {
		c.Keepalive = 500 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Service makes the peers of one server. The zero value is not usable; see
// New.
type Service struct {
	cfg Config

	mu     sync.Mutex // guards the fields below
	conn   net.PacketConn
	mux    ice.UDPMux
	api    *webrtc.API
	cert   *webrtc.Certificate // the DTLS certificate of every peer connection
	peers  map[*Peer]struct{}
	closed bool

	bytesOut  atomic.Int64 // payload bytes of state frames sent, every peer
	dropped   atomic.Int64 // state frames taken but dropped, every peer
	congested atomic.Int64 // state frames refused for a full buffer, every peer
}

// New returns a Service; it opens nothing until Listen or the first offer.
func New(cfg Config) *Service {
	return &Service{cfg: cfg.withDefaults(), peers: make(map[*Peer]struct{})}
}

// Listen opens the UDP port at addr (Config.UDP when empty). A second call
// does nothing and returns nil.
func (s *Service) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.listenLocked(addr)
	return err
}

// Addr returns the address of the UDP port, or nil before it is open.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	return s.conn.LocalAddr()
}

// listenLocked opens the port unless open and returns the API on it.
func (s *Service) listenLocked(addr string) (*webrtc.API, error) {
	if s.closed {
		return nil, ErrClosed
	}
	if s.api != nil {
		return s.api, nil
	}
	if addr == "" {
		addr = s.cfg.UDP
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rtc: udp address %q: %w", addr, err)
	}
	var conn net.PacketConn
	if s.cfg.Net != nil {
		conn, err = s.cfg.Net.ListenUDP("udp", ua)
	} else {
		conn, err = net.ListenUDP("udp", ua)
	}
	if err != nil {
		return nil, fmt.Errorf("rtc: %w", err)
	}
	quiet := &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	mux := webrtc.NewICEUDPMux(quiet.NewLogger("udpmux"), conn)
	var se webrtc.SettingEngine
	se.LoggerFactory = quiet
	se.SetICEUDPMux(mux)
	// ICE lite (RFC 8445 2.5), as a server with a public address or a 1:1
	// NAT can be: the server only answers the client's checks and never
	// sends its own. A full agent also checks the client's candidates
	// directly, and a client that answers from its own address then has a
	// second path that skips the announced one (-rtc-public-ip): a relay or
	// NAT that should carry every packet is bypassed.
	se.SetLite(true)
	se.DetachDataChannels()
	sctpSettings(&se)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(s.cfg.Disconnected, s.cfg.Failed, s.cfg.Keepalive)
	if s.cfg.Net != nil {
		se.SetNet(s.cfg.Net)
	}
	ip := conn.LocalAddr().(*net.UDPAddr).IP
	if ip.To4() != nil {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	}
	if ip.IsLoopback() || s.cfg.Loopback {
		se.SetIncludeLoopbackCandidate(true)
	}
	if s.cfg.Loopback {
		Loopback(&se)
	}
	if len(s.cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(s.cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	s.conn, s.mux = conn, mux
	s.api = DataAPI(se)
	s.cfg.Logger.Debug("state channels listening", "udp", conn.LocalAddr().String())
	return s.api, nil
}

// DataAPI is a Pion API for DataChannels only: an empty media engine and
// an empty interceptor registry. Without the registry Pion installs its
// default RTP interceptors (NACK, RTCP reports, TWCC), four goroutines and
// their tickers per peer connection that a data-only peer never uses.
func DataAPI(se webrtc.SettingEngine) *webrtc.API {
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
}

// ClientSettings returns the Pion settings of a Go client's state channel
// (the player client's default, the bench bots'): no Pion logs, ICE over
// UDP on IPv4, no mDNS, SCTP set as on the server (sctpSettings).
func ClientSettings() webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	sctpSettings(&se)
	return se
}

// rtoMax caps SCTP's retransmission timeout at its floor (RFC 4960's 1 s,
// which Pion keeps), so that it no longer doubles with each expiry, up to
// 60 s. A state channel gives every chunk up as it sends it, so the timer
// matters only when the peer's last acknowledgements are lost: the
// sender, its congestion window full of chunks given up but not yet
// acknowledged, sends nothing until the timer fires and its FORWARD-TSN
// draws a SACK. With the doubling, a channel losing a fifth of its packets
// stayed silent for 5 s and more; capped, it mostly resumes within about
// 2 s (loss_test.go).
const rtoMax = time.Second

// sctpSettings sets what the server and the Go clients share of SCTP: the
// cap on its retransmission timeout (rtoMax), and no CRC32c on packets to
// and from a peer that skips it too (RFC 9653, negotiated in the SCTP
// handshake): DTLS already authenticates every packet it carries.
func sctpSettings(se *webrtc.SettingEngine) {
	se.SetSCTPRTOMax(rtoMax)
	se.EnableSCTPZeroChecksum(true)
}

// Loopback sets se to keep ICE on loopback: loopback candidates included,
// interfaces named lo* only, local and remote addresses loopback only,
// UDP over IPv4, no mDNS. Go clients use it in tests.
func Loopback(se *webrtc.SettingEngine) {
	loopback := func(ip net.IP) bool { return ip.IsLoopback() }
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return strings.HasPrefix(name, "lo") })
	se.SetIPFilter(loopback)
	se.SetRemoteIPFilter(loopback)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// webrtcAPI returns the API, opening the port at Config.UDP when not open
// yet, and the DTLS certificate of a new peer connection.
func (s *Service) webrtcAPI() (*webrtc.API, webrtc.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	api, err := s.listenLocked("")
	if err != nil {
		return nil, webrtc.Certificate{}, err
	}
	cert, err := s.certificateLocked()
	return api, cert, err
}

// certificateLocked returns the DTLS certificate every peer connection
// shares, made anew when it has less than a day left. Making one per
// connection (Pion's default) costs a key generation per player, which a
// burst of joins pays on the rooms' CPU; the fingerprint in each answer
// binds the certificate to its session either way.
func (s *Service) certificateLocked() (webrtc.Certificate, error) {
	if s.cert != nil && time.Until(s.cert.Expires()) > 24*time.Hour {
		return *s.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("rtc: %w", err)
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return webrtc.Certificate{}, fmt.Errorf("rtc: %w", err)
	}
	s.cert = cert
	return *cert, nil
}

// track registers p so that Close closes it; false once closed.
func (s *Service) track(p *Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.peers[p] = struct{}{}
	return true
}

func (s *Service) untrack(p *Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.peers, p)
}

// Totals are a Service's counters over every peer, closed ones included.
type Totals struct {
	BytesOut  int64 // payload bytes of the state frames sent on channels
	Dropped   int64 // state frames dropped: the channel went, or its write failed, meanwhile
	Congested int64 // state frames left to the WebSocket: the channel's buffered amount over MaxBuffered
}

// Totals returns the counters.
func (s *Service) Totals() Totals {
	return Totals{BytesOut: s.bytesOut.Load(), Dropped: s.dropped.Load(), Congested: s.congested.Load()}
}

// Peers returns how many peers are open.
func (s *Service) Peers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// Close closes every peer and then the UDP port. It is safe to call twice.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	peers := make([]*Peer, 0, len(s.peers))
	for p := range s.peers {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	for _, p := range peers {
		p.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.mux != nil {
		err = s.mux.Close() // closes the socket too
		s.mux, s.conn = nil, nil
	}
	return err
}
