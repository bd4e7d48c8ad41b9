// Package server wires Tickwire's parts into one HTTP handler and runs it
// with a graceful drain. It is the only place (with cmd) that knows every
// concrete type.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/clients/web"
	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/internal/transport"
	"github.com/tickwire/tickwire/lobby"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/signaling"
	"github.com/tickwire/tickwire/wire"
)

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
	RoomIdle   time.Duration // an empty room ends after this (30s)
	Grace      time.Duration // seat held after a disconnect (15s)
	Drain      time.Duration // refuse joins this long before closing (2s)
	PingEvery  time.Duration // WebSocket ping interval (2s)
	JoinWait   time.Duration // time a player has to send join (5s)
	ReadLimit  int64         // player frame limit (4096)
	// Spectator feed settings: events kept for resumes (1024), SSE
	// heartbeat (15s), default long-poll wait (25s).
	FeedHistory   int
	FeedHeartbeat time.Duration
	PollTimeout   time.Duration
	Game          game.Config
	Logger        *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.Drain < 0 {
		c.Drain = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server is a Tickwire node.
type Server struct {
	cfg      Config
	lobby    *lobby.Lobby
	feeds    *feed.Handlers
	signal   *signaling.Server
	mux      *http.ServeMux
	draining atomic.Bool

	mu      sync.Mutex // guards conns and closing
	conns   map[*transport.Conn]struct{}
	closing bool
	active  sync.WaitGroup // WebSocket handlers running
}

// New builds a server; nothing runs until Serve (rooms start on demand).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, conns: make(map[*transport.Conn]struct{})}
	s.lobby = lobby.New(lobby.Config{
		Hz: cfg.Hz, MaxPlayers: cfg.MaxPlayers, Grace: cfg.Grace, RoomIdle: cfg.RoomIdle,
		JoinWait: cfg.JoinWait, Game: cfg.Game, Logger: cfg.Logger,
		Feed: feed.Config{SpectateHz: cfg.SpectateHz, History: cfg.FeedHistory},
	})
	s.feeds = feed.NewHandlers(feed.HandlerConfig{
		Lookup: s.lobby.Feed, Heartbeat: cfg.FeedHeartbeat, PollTimeout: cfg.PollTimeout,
	})
	s.mux = http.NewServeMux()
	s.mux.Handle("/api/rooms", s.lobby.RoomsHandler())
	s.mux.HandleFunc("GET /ws/play", s.servePlay)
	s.signal = signaling.New(signaling.Config{
		STUN: cfg.STUN, TURN: cfg.TURN, TURNSecret: cfg.TURNSecret,
		Transport: transport.Config{PingInterval: cfg.PingEvery, CheckOrigin: s.checkOrigin},
	})
	s.mux.Handle("GET /ws/signal", s.signal)
	s.mux.Handle("GET /api/ice", s.signal.ICEHandler())
	s.mux.HandleFunc("GET /rooms/{room}/events", s.feeds.SSE)
	s.mux.HandleFunc("GET /rooms/{room}/poll", s.feeds.Poll)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.Handle("/", web.Handler()) // the browser client
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

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
// the request's own host, and from the configured origins.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.ContainsFunc(s.cfg.Origins, func(o string) bool { return strings.EqualFold(o, origin) })
}

func (s *Server) servePlay(w http.ResponseWriter, r *http.Request) {
	conn, err := transport.Upgrade(w, r, transport.Config{
		ReadLimit: s.cfg.ReadLimit, PingInterval: s.cfg.PingEvery, CheckOrigin: s.checkOrigin,
	})
	if err != nil {
		return // the upgrader has answered
	}
	if !s.track(conn) {
		conn.Close(wire.CloseGoingAway, "server is shutting down")
		return
	}
	defer s.untrack(conn)
	s.lobby.ServePlayer(conn, transport.IsTimeout)
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

func (s *Server) untrack(c *transport.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.active.Done()
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

// Listen opens the configured address.
func (s *Server) Listen() (net.Listener, error) {
	return net.Listen("tcp", s.cfg.Addr)
}

// Serve serves on ln until ctx ends, then drains: /healthz answers 503 and
// joins are refused at once, the listener stays open for the drain time,
// then WebSockets get close 1001, the listener closes and Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
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
	s.feeds.Shutdown()
	err = errors.Join(err, s.signal.Shutdown(ctx))
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	return err
}
