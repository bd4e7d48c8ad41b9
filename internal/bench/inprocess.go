package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/tickwire/tickwire/server"
)

// InProcess is a server running inside the benchmark's own process: for
// tests, for tick durations read straight from the rooms, and for CPU
// profiles, where every goroutine of the server carries the pprof label
// side=server (goroutines inherit labels from the one that starts them).
type InProcess struct {
	*Target
	Server *server.Server
	cancel context.CancelFunc
	done   chan error
}

// StartInProcess runs a server with cfg on 127.0.0.1 (Addr is ignored).
func StartInProcess(cfg server.Config) (*InProcess, error) {
	cfg.Addr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := server.Open(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := s.Listen()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &InProcess{Target: Remote("http://"+ln.Addr().String(), 0), Server: s, cancel: cancel, done: make(chan error, 1)}
	pprof.Do(ctx, pprof.Labels("side", "server"), func(ctx context.Context) {
		go func() { p.done <- s.Serve(ctx, ln) }()
	})
	return p, nil
}

// Addr is the server's host:port.
func (p *InProcess) Addr() string { return p.URL[len("http://"):] }

// Close drains and stops the server.
func (p *InProcess) Close() error {
	p.cancel()
	return <-p.done
}

// RoomProbe measures tick durations by reading the rooms' own counters
// (room.Stats) of an in-process server every 2 ms: each tick that ran
// since the last look contributes its duration once. With ticks 10x
// longer than the sampling period, nearly every tick is seen.
type RoomProbe struct {
	Server *server.Server

	mu     sync.Mutex // guards s
	s      samples
	cancel context.CancelFunc
	done   chan struct{}
}

// Begin starts sampling the rooms.
func (p *RoomProbe) Begin(rooms []string) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		seen := make([]uint64, len(rooms))
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for i, id := range rooms {
				r, err := p.Server.Lobby().Room(id)
				if err != nil {
					continue
				}
				st := r.Stats()
				if st.Ticks != seen[i] {
					if seen[i] != 0 {
						p.mu.Lock()
						p.s.addDur(st.LastTick)
						p.mu.Unlock()
					}
					seen[i] = st.Ticks
				}
			}
		}
	}()
}

// End stops sampling and returns the tick durations.
func (p *RoomProbe) End() (Dist, string, bool) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.dist(), "room.Stats, in-process server", len(p.s) > 0
}

// Dial connects to the in-process server (for raw-socket tests).
func (p *InProcess) Dial() (net.Conn, error) { return net.Dial("tcp", p.Addr()) }
