// Package server wires Tickwire's parts into one HTTP handler and runs it
// with a graceful drain. It is the only place (with cmd) that knows every
// concrete type.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/tickwire/tickwire/clients/web"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/internal/auth"
	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/internal/limits"
	"github.com/tickwire/tickwire/internal/metrics"
	"github.com/tickwire/tickwire/internal/overload"
	"github.com/tickwire/tickwire/internal/rtc"
	"github.com/tickwire/tickwire/internal/transport"
	"github.com/tickwire/tickwire/lobby"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/lobby/replay"
	"github.com/tickwire/tickwire/signaling"
	"github.com/tickwire/tickwire/wire"
)

// NoLimit in a limit of Config lifts that limit (the flags' 0).
const NoLimit = -1

// Config is everything `tickwire serve` can be told. Zero fields take the
// defaults of the command line.
type Config struct {
	Addr       string        // listen address (127.0.0.1:8080)
	Hz         int           // room tick rate (30)
	SpectateHz int           // spectator snapshot rate (10)
	MaxPlayers int           // seats of an auto room (16)
	AuthSecret string        // HS256 secret; empty = guests allowed
	Origins    []string      // allowed browser origins; empty = same host only
	NATS       string        // NATS URL; empty = single node
	STUN       []string      // STUN URLs for ICE
	TURN       []string      // TURN URLs for ICE
	TURNSecret string        // shared secret for TURN REST credentials
	TLSCert    string        // certificate file; with TLSKey serves https/wss
	TLSKey     string        // private key file
	RoomIdle   time.Duration // an empty room ends after this (30s)
	Grace      time.Duration // seat held after a disconnect (15s)
	Drain      time.Duration // refuse joins this long before closing (2s)
	PingEvery  time.Duration // WebSocket ping interval (2s)
	JoinWait   time.Duration // time a player has to send join (5s)
	ReadLimit  int64         // player frame limit (4096)
	// Limits: connections (WebSockets, SSE streams, polls) in total (10000)
	// and per client (256), rooms (1000), spectators per room (5000),
	// chat lines per player (5/s, bursts of 20), messages per player
	// (2 * Hz; 10x that for 2 s closes with 4029), relayed signaling
	// messages per peer (50/s, bursts of 200), rooms created per client
	// (1/s, bursts of 5; POST /api/rooms and `auto` making a room).
	//
	// Zero takes the default in parentheses; NoLimit (any negative value)
	// lifts the limit. The same goes for ReadLimit, for MaxPlayers (no
	// limit: the most a room may have, lobby.MaxRoomSeats) and for
	// SpectateHz (no limit: spectators get every tick). The flags of
	// `tickwire serve` say 0 for no limit and turn it into NoLimit, so
	// that a Config written in Go keeps its zero value meaning "defaults".
	MaxConns      int
	MaxConnsPerIP int
	MaxRooms      int
	MaxSpectators int
	ChatRate      float64
	ChatBurst     int
	MessageRate   float64
	SignalRate    float64
	SignalBurst   int
	RoomRate      float64
	RoomBurst     int
	// TrustedProxies are the reverse proxies (CIDRs or addresses) whose
	// requests are attributed to the client named in X-Forwarded-For (the
	// last address not in the list, walking from the right) or Forwarded
	// (for=), for every per-client limit and log line; requests from other
	// addresses are their TCP peer's, whatever their headers say. Loopback
	// clients are exempt from the per-client limits.
	TrustedProxies []string
	// HTTP timeouts of Serve (each 0: the default): HeaderTimeout for a
	// request's headers (10s, as the contract says), BodyTimeout for its
	// body (10s), WriteTimeout for the answer of a short request (30s;
	// long-lived streams, polls and WebSockets set their own deadlines),
	// IdleTimeout for a keep-alive connection waiting for its next request
	// (2m).
	HeaderTimeout time.Duration
	BodyTimeout   time.Duration
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
	// Spectator feed settings: events kept for resumes (1024), and at most
	// FeedHistoryBytes of them per room (1 MiB) and FeedBudgetBytes over
	// every room of the node (64 MiB), oldest first; SSE heartbeat (15s),
	// default long-poll wait (25s).
	FeedHistory      int
	FeedHistoryBytes int64
	FeedBudgetBytes  int64
	FeedHeartbeat    time.Duration
	PollTimeout      time.Duration
	// Delayed feeds (?delay=S): FeedDelayBytes caps what the node queues
	// for them (256 MiB; beyond it new delays are refused; NoLimit: no
	// cap), FeedDelayIdle
	// is how long a room's feed at one delay outlives its last viewer
	// (30s).
	FeedDelayBytes int64
	FeedDelayIdle  time.Duration
	// PublicURL is the base URL clients reach this node at, shown with its
	// rooms to the other nodes' clients (default: http(s)://Addr, or the
	// address Listen opened).
	PublicURL string
	// DirectoryEvery is how often this node tells the others its rooms
	// (1s); DirectoryTTL how long a silent node's rooms stay listed (3s).
	DirectoryEvery time.Duration
	DirectoryTTL   time.Duration

	// Recording (replays): DataDir is the directory of the recordings;
	// empty, no room is recorded (a Config written in Go records nothing
	// unless told where; `tickwire serve` records into ./data unless
	// -record=false). ReplayKeep is how long a recording is kept after its
	// room ended (24h); ReplayMaxBytes caps the recordings' total size, the
	// oldest removed first (8 GiB; NoLimit: no cap). With NATS, the
	// recordings are also kept in NATS JetStream, where every node lists
	// and plays them; ReplayReplicas is how many JetStream servers keep
	// each (1).
	DataDir        string
	ReplayKeep     time.Duration
	ReplayMaxBytes int64
	ReplayReplicas int

	Pprof bool // serve /debug/pprof/
	// NoOverload turns off refusing new players, rooms and viewers while
	// ticks run late (see internal/overload); OverloadHold is how long an
	// overload lasts at least and the retry hint given (5s).
	NoOverload   bool
	OverloadHold time.Duration
	// OverloadCPU is the share of the CPU available to the process over
	// which the node counts as overloaded too (0.9); negative: CPU use is
	// not a signal, only late ticks and goroutines waiting to run are.
	OverloadCPU float64
	// Modes are the game modes rooms may run, the first being the
	// default; empty: BuiltinModes.
	Modes  []game.Spec
	Logger *slog.Logger
	// State over WebRTC (contract 1.1): NoRTC answers every `rtc-offer`
	// with `error` `unsupported`. RTCUDP is the one UDP port of every
	// player's peer connection (default: the host and port Listen opened,
	// over UDP; a server served through Handler alone, without Listen,
	// takes a free port on Addr's host at the first offer). RTCPublicIPs
	// are announced in its candidates instead of the machine's addresses,
	// behind a 1:1 NAT. RTCMaxFrame, when positive, is the largest state
	// frame sent on a channel, larger ones going on the WebSocket (1,100
	// bytes keeps every frame within one SCTP chunk); zero or NoLimit:
	// every state frame goes on the channel, as the contract says.
	NoRTC        bool
	RTCUDP       string
	RTCPublicIPs []string
	RTCMaxFrame  int
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.Drain < 0 {
		c.Drain = 0
	}
	c.HeaderTimeout = orDefault(c.HeaderTimeout, 10*time.Second)
	c.BodyTimeout = orDefault(c.BodyTimeout, 10*time.Second)
	c.WriteTimeout = orDefault(c.WriteTimeout, 30*time.Second)
	c.IdleTimeout = orDefault(c.IdleTimeout, 2*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c
}

// orDefault resolves a setting of Config whose user takes 0 for "none":
// 0 takes def, a negative value (NoLimit) gives 0, no limit. It serves the
// HTTP timeouts (0 is none for net/http), the connection caps (for
// limits.New) and ReplayMaxBytes (for replay.Config). Settings whose user
// takes 0 for its own default turn a negative value into a limit never
// reached instead (MaxSpectators, noByteCap).
func orDefault[T ~int | ~int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// everyTick is a spectator rate above any tick rate: spectators get every
// tick (SpectateHz NoLimit).
const everyTick = 1 << 20

// maxRequestBody bounds the body of any request (the largest the API
// takes, POST /api/rooms, is a few dozen bytes).
const maxRequestBody = 64 << 10

// feedConfig is every spectator feed's configuration.
func (c Config) feedConfig(budget *feed.Budget) feed.Config {
	hz := c.SpectateHz
	if hz < 0 {
		hz = everyTick
	}
	return feed.Config{SpectateHz: hz, History: c.FeedHistory, HistoryBytes: c.FeedHistoryBytes, Budget: budget}
}

// Server is a Tickwire node.
type Server struct {
	cfg  Config
	load *overload.Detector // nil with Config.NoOverload
	// feedBudget is the history bytes every feed of this node shares.
	feedBudget *feed.Budget
	lobby      *lobby.Lobby
	feeds      *feed.Handlers
	replays    *replay.Store    // nil when rooms are not recorded
	replayHTTP *replay.Handlers // GET /api/replays, /rooms/{room}/replay
	signal     *signaling.Server
	auth       *auth.Verifier
	metrics    *metrics.Metrics
	limits     *limits.Limiter
	proxies    *limits.Proxies    // trusted reverse proxies; nil: none
	play       transport.Counters // totals of the player WebSockets
	signals    transport.Counters // totals of the signaling WebSockets
	handler    http.Handler
	draining   atomic.Bool
	bus        bus.Bus       // to the other nodes: NATS, or in-process alone
	cluster    *feed.Cluster // other nodes' feeds mirrored here, ours served to them
	rtc        *rtc.Service  // players' state channels; nil with Config.NoRTC

	mu      sync.Mutex // guards conns and closing
	conns   map[*transport.Conn]struct{}
	closing bool
	active  sync.WaitGroup // WebSocket handlers running
}

// New is Open for a configuration that cannot fail to open, one without
// NATS: it panics when Open returns an error.
func New(cfg Config) *Server {
	s, err := Open(cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// Open builds a server: with cfg.NATS it connects to that NATS server,
// failing when it cannot, and joins the nodes there; without, it is a node
// of its own. Rooms start on demand; the node tells the others its rooms
// from now on, and serves HTTP from Serve (or through Handler) until
// Shutdown.
func Open(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	proxies, err := limits.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		proxies: proxies,
		cfg:     cfg,
		conns:   make(map[*transport.Conn]struct{}),
		auth:    auth.NewVerifier(cfg.AuthSecret),
		metrics: metrics.New(),
	}
	if cfg.NATS != "" {
		nb, err := bus.ConnectNATS(bus.NATSConfig{URL: cfg.NATS, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("server: nats %s: %w", cfg.NATS, err)
		}
		s.bus = nb
	} else {
		s.bus = bus.NewLocal()
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = BuiltinModes()
	}
	modes, err := game.NewCatalog(cfg.Modes...)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.limits = limits.New(orDefault(cfg.MaxConns, 10000), orDefault(cfg.MaxConnsPerIP, 256), s.metrics.Reject)
	if cfg.DataDir != "" {
		rc := replay.Config{Dir: cfg.DataDir, Keep: cfg.ReplayKeep, MaxBytes: orDefault(cfg.ReplayMaxBytes, DefaultReplayMaxBytes), Logger: cfg.Logger, Replicas: cfg.ReplayReplicas}
		if nb, ok := s.bus.(*bus.NATS); ok {
			rc.NATS = nb.Conn() // closed after the store
		}
		s.replays, err = replay.Open(rc)
		if err != nil {
			_ = s.bus.Close()
			return nil, fmt.Errorf("server: recordings: %w", err)
		}
	}
	s.replayHTTP = replay.NewHandlers(replay.HandlerConfig{Store: s.replays, Heartbeat: cfg.FeedHeartbeat})
	s.feedBudget = feed.NewBudget(cfg.FeedBudgetBytes)
	var onLate func(late, period time.Duration, skipped int)
	var load lobby.Load
	if !cfg.NoOverload {
		s.load = overload.New(overload.Config{Hold: cfg.OverloadHold, CPULimit: cfg.OverloadCPU, OnChange: func(over bool, w overload.Window) {
			if over {
				cfg.Logger.Warn("overloaded: refusing new players, rooms and viewers",
					"lateTicks", fmt.Sprintf("%.1f%%", 100*w.LateShare), "schedLatencyP99", w.SchedP99, "cpu", fmt.Sprintf("%.0f%%", 100*w.CPU))
			} else {
				cfg.Logger.Info("load back under capacity: taking new players again")
			}
		}})
		onLate, load = s.load.Tick, s.load
	}
	var channels func(lobby.StateChannelConfig) lobby.StateChannel
	if !cfg.NoRTC {
		s.rtc = rtc.New(rtc.Config{UDP: cfg.rtcFallbackUDP(), PublicIPs: cfg.RTCPublicIPs, MaxFrame: cfg.rtcMaxFrame(), Logger: cfg.Logger})
		channels = s.stateChannel
	}
	// The lobby reads its limits as Config does: 0 the default, negative
	// none.
	l, err := lobby.New(lobby.Config{
		Hz: cfg.Hz, MaxPlayers: cfg.MaxPlayers, Grace: cfg.Grace, RoomIdle: cfg.RoomIdle,
		JoinWait: cfg.JoinWait, ChatRate: cfg.ChatRate, ChatBurst: cfg.ChatBurst,
		MessageRate: cfg.MessageRate, MaxRooms: cfg.MaxRooms, RoomRate: cfg.RoomRate, RoomBurst: cfg.RoomBurst,
		Modes: modes, Logger: cfg.Logger,
		Feed:     cfg.feedConfig(s.feedBudget),
		OnReject: s.metrics.Reject, OnTick: s.metrics.Tick, OnLate: onLate, Load: load,
		Bus: s.bus, URL: cfg.PublicURL, DirectoryEvery: cfg.DirectoryEvery, DirectoryTTL: cfg.DirectoryTTL,
		StateChannels: channels, Replays: s.replays,
	})
	if err != nil {
		s.closeReplays()
		_ = s.bus.Close()
		return nil, err
	}
	s.lobby = l
	if cfg.PublicURL == "" {
		if host, port, err := net.SplitHostPort(cfg.Addr); err == nil && host != "" && port != "0" {
			s.lobby.SetURL(s.Scheme() + "://" + cfg.Addr)
		}
	}
	s.cluster, err = feed.NewCluster(feed.ClusterConfig{
		Bus: s.bus, Node: s.lobby.Node(), Feed: cfg.feedConfig(s.feedBudget),
		Local: s.lobby.Feed, Host: s.lobby.RemoteHost, Logger: cfg.Logger,
	})
	if err != nil {
		_ = s.lobby.Shutdown(context.Background())
		s.closeReplays()
		_ = s.bus.Close()
		return nil, err
	}
	maxViewers := cfg.MaxSpectators
	if maxViewers < 0 {
		maxViewers = math.MaxInt
	}
	s.feeds = feed.NewHandlers(feed.HandlerConfig{
		Lookup: s.cluster.Feed, Heartbeat: cfg.FeedHeartbeat, PollTimeout: cfg.PollTimeout,
		MaxViewers: maxViewers, MaxDelayBytes: noByteCap(cfg.FeedDelayBytes), DelayIdle: cfg.FeedDelayIdle,
	})
	relayRate, relayBurst := rate.Limit(cfg.SignalRate), cfg.SignalBurst
	if cfg.SignalRate < 0 || cfg.SignalBurst < 0 {
		relayRate, relayBurst = rate.Inf, 1
	}
	s.signal = signaling.New(signaling.Config{
		STUN: cfg.STUN, TURN: cfg.TURN, TURNSecret: cfg.TURNSecret,
		RelayRate: relayRate, RelayBurst: relayBurst,
		Transport:    transport.Config{PingInterval: cfg.PingEvery, CheckOrigin: s.checkOrigin, Counters: &s.signals},
		Authenticate: s.authenticate,
		Bus:          s.bus, Node: s.lobby.Node(),
	})
	s.registerMetrics()

	mux := http.NewServeMux()
	// Routes of the contract. Everything under /api/, /rooms/ and /ws/
	// passes the origin check; /api/ and /rooms/ need a token in the
	// request when auth is on, /ws/ may carry it in its first message.
	// Long-lived connections count against the connection limits.
	// Short requests must have their answer written within WriteTimeout
	// (brief); long-lived ones set their own write deadlines.
	mux.Handle("/api/rooms", s.brief(s.requireToken(s.lobby.RoomsHandler())))
	mux.Handle("/api/modes", s.brief(s.requireToken(s.lobby.ModesHandler())))
	mux.Handle("GET /api/ice", s.brief(s.requireToken(s.signal.ICEHandler())))
	mux.Handle("GET /ws/play", s.optionalToken(s.limits.Wrap(http.HandlerFunc(s.servePlay))))
	mux.Handle("GET /ws/signal", s.optionalToken(s.limits.Wrap(s.signal)))
	mux.Handle("GET /rooms/{room}/events", s.requireToken(s.limits.Wrap(s.admitViewers(http.HandlerFunc(s.feeds.SSE)))))
	mux.Handle("GET /rooms/{room}/poll", s.requireToken(s.limits.Wrap(s.admitViewers(http.HandlerFunc(s.feeds.Poll)))))
	mux.Handle("GET /api/replays", s.brief(s.requireToken(http.HandlerFunc(s.replayHTTP.List))))
	mux.Handle("GET /rooms/{room}/replay", s.requireToken(s.limits.Wrap(s.admitViewers(http.HandlerFunc(s.replayHTTP.SSE)))))
	mux.Handle("GET /healthz", s.brief(http.HandlerFunc(s.healthz)))
	mux.Handle("GET /metrics", s.brief(s.metrics.Handler()))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", s.brief(web.Handler())) // the browser client
	// Every request is attributed to its client first (trusted proxies),
	// and its body bounded.
	s.handler = s.proxies.Attribute(s.bound(s.originGuard(mux)))
	return s, nil
}

// rtcMaxFrame is RTCMaxFrame as internal/rtc takes it (negative: no
// limit).
func (c Config) rtcMaxFrame() int {
	if c.RTCMaxFrame <= 0 {
		return -1
	}
	return c.RTCMaxFrame
}

// rtcFallbackUDP is the UDP address of state channels when neither
// RTCUDP nor Listen gives one: a free port on Addr's host.
func (c Config) rtcFallbackUDP() string {
	if c.RTCUDP != "" {
		return c.RTCUDP
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, "0")
}

// stateChannel makes a player's state channel (lobby.Config.StateChannels).
func (s *Server) stateChannel(c lobby.StateChannelConfig) lobby.StateChannel {
	p, err := s.rtc.NewPeer(rtc.PeerConfig{Signal: c.Signal, Receive: c.Receive})
	if err != nil {
		return nil // shutting down
	}
	return p
}

// RTCAddr returns the UDP address of the players' state channels, or nil
// while it is not open (or with NoRTC).
func (s *Server) RTCAddr() net.Addr {
	if s.rtc == nil {
		return nil
	}
	return s.rtc.Addr()
}

// registerMetrics exposes the parts' state to /metrics.
func (s *Server) registerMetrics() {
	m := s.metrics
	m.Gauge("tickwire_rooms", "Rooms open.", func() float64 { return float64(s.lobby.Stats().Rooms) })
	m.Gauge("tickwire_players", "Seats taken, connected or held.", func() float64 { return float64(s.lobby.Stats().Players) })
	m.Gauge("tickwire_spectators", "SSE streams and parked long-polls on rooms.", func() float64 { return float64(s.lobby.Stats().Spectators) })
	m.Gauge("tickwire_overloaded", "1 while the node is past its capacity (ticks start late, or goroutines wait to run) and new players, rooms and viewers are refused.", func() float64 {
		if s.load != nil && s.load.Overloaded() {
			return 1
		}
		return 0
	})
	m.ByLabel("tickwire_connections", "Open connections by transport.", "transport", prometheus.GaugeValue, func() map[string]float64 {
		s.mu.Lock()
		play := len(s.conns)
		s.mu.Unlock()
		fs := s.feeds.Stats()
		peers := 0
		if s.rtc != nil {
			peers = s.rtc.Peers()
		}
		return map[string]float64{
			"websocket": float64(play), "signaling": float64(s.signal.Stats().Conns),
			"sse": float64(fs.Streams), "poll": float64(fs.ParkedPolls), "webrtc": float64(peers),
		}
	})
	m.ByLabel("tickwire_bytes_out_total", "Payload bytes sent, by transport.", "transport", prometheus.CounterValue, func() map[string]float64 {
		fs := s.feeds.Stats()
		var rtcOut int64
		if s.rtc != nil {
			rtcOut = s.rtc.Totals().BytesOut
		}
		return map[string]float64{
			"websocket": float64(s.play.BytesOut.Load()), "signaling": float64(s.signals.BytesOut.Load()),
			"sse": float64(fs.BytesSSE), "poll": float64(fs.BytesPoll), "webrtc": float64(rtcOut),
		}
	})
	m.Gauge("tickwire_feed_delay_bytes", "Bytes queued for the delayed spectator feeds (?delay=S).",
		func() float64 { return float64(s.feeds.Stats().DelayBytes) })
	m.Gauge("tickwire_feed_delay_lines", "Delayed spectator feeds running, one per room and delay.",
		func() float64 { return float64(s.feeds.Stats().DelayLines) })
	m.Counter("tickwire_snapshots_replaced_total", "Snapshots replaced by a newer one before a slow player got them (latest wins).",
		func() float64 { return float64(s.play.StatesReplaced.Load()) })
	m.Counter("tickwire_state_channel_drops_total", "State frames dropped on players' WebRTC state channels (the channel went, or its write failed, after the frame was taken).",
		func() float64 {
			if s.rtc == nil {
				return 0
			}
			return float64(s.rtc.Totals().Dropped)
		})
	m.Counter("tickwire_state_channel_congested_total", "State frames sent on the WebSocket because the player's WebRTC state channel held more than its threshold unacknowledged.",
		func() float64 {
			if s.rtc == nil {
				return 0
			}
			return float64(s.rtc.Totals().Congested)
		})
	m.Counter("tickwire_slow_consumers_total", "WebSockets closed with 1008 slow consumer.",
		func() float64 { return float64(s.play.SlowConsumers.Load() + s.signals.SlowConsumers.Load()) })
	m.Counter("tickwire_signaling_relays_total", "Offers, answers and ICE candidates relayed.",
		func() float64 { return float64(s.signal.Stats().Relayed) })
}

// authenticate checks a signaling client: the token of its request, or
// else the one in its join.
func (s *Server) authenticate(r *http.Request, token string) (string, time.Time, error) {
	id, err := s.identity(r.Context(), token)
	return id.User, id.Expires, err
}

// identity returns who the checked token of a request (in its context)
// names, or else checks token.
func (s *Server) identity(ctx context.Context, token string) (auth.Identity, error) {
	if id, ok := auth.FromContext(ctx); ok {
		return id, nil
	}
	id, err := s.auth.Verify(token)
	if err != nil {
		s.metrics.Reject(wire.CodeUnauthorized)
	}
	return id, err
}

// requireToken answers 401 to a request without a valid token when auth is
// on.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return s.checkToken(next, false)
}

// optionalToken checks a token the request carries, and lets a request
// without one through (a WebSocket may send it in its first message).
func (s *Server) optionalToken(next http.Handler) http.Handler {
	return s.checkToken(next, true)
}

func (s *Server) checkToken(next http.Handler, optional bool) http.Handler {
	if !s.auth.Required() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := auth.FromRequest(r)
		if tok == "" && optional {
			next.ServeHTTP(w, r)
			return
		}
		id, err := s.auth.Verify(tok)
		if err != nil {
			s.metrics.Reject(wire.CodeUnauthorized)
			httpapi.WriteError(w, http.StatusUnauthorized, httpapi.CodeUnauthorized, "a valid token is required")
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), id)))
	})
}

// originGuard refuses browsers from origins not allowed on /api/, /rooms/
// and /ws/ with 403, and gives allowed cross-origin callers of /api/ and
// /rooms/ their CORS headers, preflights included.
func (s *Server) originGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		guarded := strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/rooms/") || strings.HasPrefix(r.URL.Path, "/ws/")
		if origin == "" || !guarded {
			next.ServeHTTP(w, r)
			return
		}
		if !s.checkOrigin(r) {
			s.metrics.Reject("origin")
			httpapi.WriteError(w, http.StatusForbidden, httpapi.CodeForbidden, "origin "+origin+" is not allowed")
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/ws/") {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// bound bounds the body of every request, in time (BodyTimeout) and size,
// and clears a write deadline that an earlier request on the same
// keep-alive connection left (see brief), so that a stream or WebSocket
// that follows a short request on it is not cut.
func (s *Server) bound(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			if s.cfg.BodyTimeout > 0 {
				_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		}
		next.ServeHTTP(w, r)
	})
}

// brief gives a short request's answer WriteTimeout to be written, so that
// a client that does not read cannot hold the handler and connection.
// net/http's own WriteTimeout would cut every stream, WebSocket and parked
// poll as well, which set deadlines of their own instead.
func (s *Server) brief(next http.Handler) http.Handler {
	if s.cfg.WriteTimeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		next.ServeHTTP(w, r)
	})
}

// configureHTTP sets the timeouts of the http.Server that serves this
// server's handler: HeaderTimeout for a request's headers (a TLS handshake
// included) and IdleTimeout for a keep-alive connection between requests.
// Bodies and short answers are bounded by the handler itself (bound,
// brief); WebSockets, SSE streams and parked polls, which outlive every
// one of these, keep their own deadlines.
func (s *Server) configureHTTP(hs *http.Server) {
	hs.ReadHeaderTimeout = s.cfg.HeaderTimeout
	hs.IdleTimeout = s.cfg.IdleTimeout
	hs.ReadTimeout, hs.WriteTimeout = 0, 0
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Scheme is "https" when the server has a certificate, else "http".
func (s *Server) Scheme() string {
	if s.cfg.TLSCert != "" {
		return "https"
	}
	return "http"
}

// Lobby returns the rooms registry.
func (s *Server) Lobby() *lobby.Lobby { return s.lobby }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "draining")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// checkOrigin allows requests without an Origin (non-browser clients), from
// the request's own host, from the public URL of any node of the cluster
// (a page of one node follows `moved` to another), and from the configured
// origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) || s.lobby.IsNodeOrigin(origin) {
		return true
	}
	return slices.ContainsFunc(s.cfg.Origins, func(o string) bool { return strings.EqualFold(o, origin) })
}

func (s *Server) servePlay(w http.ResponseWriter, r *http.Request) {
	if s.isClosing() {
		// Refused before the upgrade: a WebSocket now would be closed at
		// once, its close handshake outliving the shutdown.
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "server is shutting down", time.Second)
		return
	}
	readLimit := s.cfg.ReadLimit
	if readLimit < 0 {
		readLimit = math.MaxInt64
	}
	conn, err := transport.Upgrade(w, r, transport.Config{
		ReadLimit: readLimit, PingInterval: s.cfg.PingEvery, CheckOrigin: s.checkOrigin,
		Counters: &s.play, OnRTT: s.metrics.RTT,
	})
	if err != nil {
		return // the upgrader has answered
	}
	if !s.track(conn) {
		conn.Close(wire.CloseGoingAway, "server is shutting down")
		return
	}
	opts := lobby.PlayerOptions{IsTimeout: transport.IsTimeout, Client: limits.ClientIP(r)}
	if s.auth.Required() {
		ctx := r.Context()
		opts.Authorize = func(token string) (string, time.Time, error) {
			id, err := s.identity(ctx, token)
			return id.Name, id.Expires, err
		}
	}
	// The session runs on a goroutine of its own so that this handler
	// returns and net/http frees the connection's buffers and stack.
	release := limits.Detach(r.Context())
	go func() {
		defer release()
		defer s.active.Done()
		s.lobby.ServePlayer(conn, opts)
		s.untrack(conn)
		// A session that ends without reading to the end (a refused join,
		// a kick) leaves the close handshake to the connection's writer,
		// which waits up to a second for the peer's answer: Shutdown
		// waits for the connection to finish too.
		<-conn.Done()
	}()
}

// track registers a connection so a shutdown can close it; it reports false
// once the server is closing connections.
func (s *Server) track(c *transport.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	return true
}

// untrack forgets a connection whose session has ended; Shutdown still
// waits for it (active) until it has finished.
func (s *Server) untrack(c *transport.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// isClosing reports whether the server is closing its WebSockets.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// closeConns closes every WebSocket with 1001 and refuses new ones.
func (s *Server) closeConns() {
	s.mu.Lock()
	s.closing = true
	conns := make([]*transport.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(wire.CloseGoingAway, "server is shutting down")
	}
}

// Listen opens the configured address, and the UDP port of the players'
// state channels (RTCUDP, default the same host and port over UDP).
// Without a configured public URL, the address it opened becomes the
// node's.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, err
	}
	if s.rtc != nil {
		udp := s.cfg.RTCUDP
		if udp == "" {
			udp = ln.Addr().String()
		}
		if err := s.rtc.Listen(udp); err != nil {
			ln.Close()
			return nil, fmt.Errorf("state channels (-rtc-udp): %w", err)
		}
	}
	if s.cfg.PublicURL == "" {
		s.lobby.SetURL(s.Scheme() + "://" + ln.Addr().String())
	}
	return ln, nil
}

// Serve serves on ln until ctx ends, then drains: /healthz answers 503 and
// joins are refused at once, the listener stays open for the drain time,
// then WebSockets get close 1001, the listener closes and Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:  s.handler,
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
	}
	s.configureHTTP(hs)
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.cfg.Logger.Info("draining", "for", s.cfg.Drain)
	s.draining.Store(true)
	s.lobby.Drain()
	time.Sleep(s.cfg.Drain)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Shutdown(shutCtx)
	err = errors.Join(err, hs.Shutdown(shutCtx))
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Shutdown closes every WebSocket with 1001, ends every room and waits for
// them, or for ctx. It is safe to call twice.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.closeConns()
	err := s.lobby.Shutdown(ctx) // rooms end: viewers get `closed`
	s.cluster.Close()
	s.feeds.Shutdown()
	s.replayHTTP.Shutdown()
	s.closeReplays() // after the rooms: their recordings end with them
	err = errors.Join(err, s.signal.Shutdown(ctx))
	err = errors.Join(err, s.bus.Close()) // after the lobby's last directory update
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	if s.rtc != nil { // every session has closed its channel, or ctx ended
		err = errors.Join(err, s.rtc.Close())
	}
	return err
}

// DefaultReplayMaxBytes is the recordings' total size cap when
// Config.ReplayMaxBytes is 0.
const DefaultReplayMaxBytes = 8 << 30

// closeReplays closes the recordings' store, if any.
func (s *Server) closeReplays() {
	if s.replays != nil {
		_ = s.replays.Close()
	}
}

// admitViewers refuses new spectators while the node is overloaded (503
// `overloaded` with Retry-After); viewers in play (an SSE stream that
// resumes, a poll with `after`) go on.
func (s *Server) admitViewers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.load != nil && s.load.Overloaded() && newViewer(r) {
			s.metrics.Reject(wire.CodeOverloaded)
			httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeOverloaded,
				"the server is at capacity; try again later", s.load.RetryAfter())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newViewer reports whether a feed request starts watching rather than
// goes on (a resume or the next poll).
func newViewer(r *http.Request) bool {
	q := r.URL.Query()
	return r.Header.Get("Last-Event-ID") == "" && q.Get("lastEventId") == "" && q.Get("after") == ""
}
