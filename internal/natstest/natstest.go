// Package natstest runs a NATS server inside a test process, on
// 127.0.0.1 at a free port, for the tests of the bus and of several
// Tickwire nodes. Only tests import it.
package natstest

import (
	"net"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Start runs a NATS server until the test ends and returns its client URL
// (nats://127.0.0.1:PORT).
func Start(t testing.TB) string {
	t.Helper()
	return newServer(t, &natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}).URL()
}

// StartJetStream is Start with JetStream on, its files in a directory of
// the test's.
func StartJetStream(t testing.TB) string {
	t.Helper()
	return NewJetStream(t).URL()
}

// Server is a NATS server that a test may stop and start again, at the
// same address and, with JetStream, on the same files.
type Server struct {
	t    testing.TB
	opts natsserver.Options
	url  string

	mu sync.Mutex // guards ns
	ns *natsserver.Server
}

// NewJetStream runs a NATS server with JetStream, its files in a
// directory of the test's, until Stop or the end of the test.
func NewJetStream(t testing.TB) *Server {
	t.Helper()
	return newServer(t, &natsserver.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
	})
}

func newServer(t testing.TB, opts *natsserver.Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: *opts}
	s.Restart()
	if tcp, ok := s.ns.Addr().(*net.TCPAddr); ok {
		s.opts.Port = tcp.Port // a restart takes the same port
	}
	s.url = s.ns.ClientURL()
	t.Cleanup(s.Stop)
	return s
}

// URL returns the server's client URL (nats://127.0.0.1:PORT).
func (s *Server) URL() string { return s.url }

// Stop shuts the server down; it is safe to call when it is stopped.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

// Restart starts the server again after Stop; it does nothing while it
// runs.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return
	}
	opts := s.opts
	ns, err := natsserver.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		s.t.Fatal("nats server: not ready within 10s")
	}
	s.ns = ns
}
