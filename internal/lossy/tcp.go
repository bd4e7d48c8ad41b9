package lossy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// tcpHold is how many bytes one direction of a TCP flow holds before the
// relay stops reading from its source, like a full receive window.
const tcpHold = 1 << 20

// TCPRelay forwards TCP connections to a target through a Link, with loss
// turned into retransmission delay and head-of-line blocking (see the
// package comment).
type TCPRelay struct {
	cfg    Config
	ln     *net.TCPListener
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
	up     counters
	down   counters
	dialer net.Dialer

	mu     sync.Mutex // guards the fields below
	flows  map[*tcpFlow]struct{}
	nflows uint64
	closed bool
}

// tcpFlow is one accepted connection and the one dialed for it.
type tcpFlow struct {
	client, server *net.TCPConn
	stop           chan struct{} // closed by end
	once           sync.Once
}

// end closes both connections and stops the flow's pipes.
func (f *tcpFlow) end() {
	f.once.Do(func() {
		close(f.stop)
		f.client.Close()
		f.server.Close()
	})
}

// ListenTCP starts a TCP relay from cfg.Listen to cfg.Target.
func ListenTCP(cfg Config) (*TCPRelay, error) {
	cfg = cfg.withDefaults()
	laddr, err := net.ResolveTCPAddr("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("lossy: listen: %w", err)
	}
	ln, err := net.ListenTCP("tcp", laddr)
	if err != nil {
		return nil, fmt.Errorf("lossy: %w", err)
	}
	r := &TCPRelay{cfg: cfg, ln: ln, done: make(chan struct{}), flows: make(map[*tcpFlow]struct{}),
		dialer: net.Dialer{Timeout: 5 * time.Second}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the address clients connect to.
func (r *TCPRelay) Addr() *net.TCPAddr { return r.ln.Addr().(*net.TCPAddr) }

// Stats counts the segments so far.
func (r *TCPRelay) Stats() Stats { return Stats{Up: r.up.stats(), Down: r.down.stats()} }

// Close stops accepting, closes every connection (data still held is
// dropped) and waits for the relay's goroutines to end.
func (r *TCPRelay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	close(r.done)
	err := r.ln.Close()
	for f := range r.flows {
		f.end()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *TCPRelay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-r.done:
				return
			case <-time.After(10 * time.Millisecond): // out of descriptors, say
			}
			continue
		}
		r.wg.Add(1)
		go r.serve(c)
	}
}

// serve dials the target for one accepted connection and copies both ways
// until both directions end or the relay closes.
func (r *TCPRelay) serve(client *net.TCPConn) {
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	sc, err := r.dialer.DialContext(ctx, "tcp", r.cfg.Target)
	cancel()
	if err != nil {
		client.Close()
		return
	}
	f := &tcpFlow{client: client, server: sc.(*net.TCPConn), stop: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		f.end()
		return
	}
	r.flows[f] = struct{}{}
	n := r.nflows
	r.nflows++
	r.mu.Unlock()

	var dirs sync.WaitGroup
	dirs.Add(2)
	go func() { defer dirs.Done(); r.copy(f, f.client, f.server, newFate(r.cfg.Link, n, true), &r.up) }()
	go func() { defer dirs.Done(); r.copy(f, f.server, f.client, newFate(r.cfg.Link, n, false), &r.down) }()
	dirs.Wait()
	f.end()
	r.mu.Lock()
	delete(r.flows, f)
	r.mu.Unlock()
}

// copy carries one direction: a reader cuts what src sends into segments
// and schedules them; the pipe writes them to dst when due, and half-closes
// dst after the last. A failed write ends the whole flow.
func (r *TCPRelay) copy(f *tcpFlow, src, dst *net.TCPConn, fate *fate, c *counters) {
	p := newPipe(tcpHold, f.stop, func(pk packet) error {
		if pk.eof {
			dst.CloseWrite()
			return nil
		}
		_, err := dst.Write(pk.data)
		return err
	})
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		var last time.Time // due time of the segment read before
		schedule := func(pk packet) bool {
			due := time.Now().Add(fate.delay())
			if !pk.eof && fate.lost() {
				c.lost.Add(1)
				rto := r.cfg.rto()
				for {
					due = due.Add(rto)
					if !fate.lost() {
						break
					}
					rto *= 2
				}
			}
			if due.Before(last) {
				due = last
			}
			last = due
			pk.due = due
			return p.push(pk, true)
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			for seg := buf[:n]; len(seg) > 0; {
				size := min(len(seg), r.cfg.MSS)
				c.packets.Add(1)
				c.bytes.Add(int64(size))
				if !schedule(packet{data: append([]byte(nil), seg[:size]...)}) {
					return
				}
				seg = seg[size:]
			}
			if err != nil {
				schedule(packet{eof: true})
				return
			}
		}
	}()
	if p.run() != nil {
		f.end() // the reader, blocked on src or on a full pipe, ends too
	}
	reader.Wait()
}
