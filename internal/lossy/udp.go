package lossy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// udpHold is how many bytes a UDP direction holds in flight before it
// drops more, as a router's queue would.
const udpHold = 4 << 20

// UDPRelay forwards datagrams between clients and a target through a Link.
type UDPRelay struct {
	cfg    Config
	conn   *net.UDPConn // the listening socket: clients send here
	target *net.UDPAddr
	done   chan struct{}
	wg     sync.WaitGroup
	up     counters
	down   counters

	mu     sync.Mutex // guards the fields below
	flows  map[netip.AddrPort]*udpFlow
	nflows uint64
	closed bool
}

// udpFlow is one client address: its upstream socket and its two pipes.
type udpFlow struct {
	upstream *net.UDPConn
	upFate   *fate // used by the relay's read loop only
	upPipe   *pipe
}

// ListenUDP starts a UDP relay from cfg.Listen to cfg.Target.
func ListenUDP(cfg Config) (*UDPRelay, error) {
	cfg = cfg.withDefaults()
	target, err := net.ResolveUDPAddr("udp", cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("lossy: target: %w", err)
	}
	laddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("lossy: listen: %w", err)
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("lossy: %w", err)
	}
	r := &UDPRelay{cfg: cfg, conn: conn, target: target, done: make(chan struct{}),
		flows: make(map[netip.AddrPort]*udpFlow)}
	r.wg.Add(1)
	go r.readClients()
	return r, nil
}

// Addr is the address clients send to.
func (r *UDPRelay) Addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

// Stats counts the datagrams so far.
func (r *UDPRelay) Stats() Stats { return Stats{Up: r.up.stats(), Down: r.down.stats()} }

// Close closes every socket of the relay and waits for its goroutines to
// end. Datagrams still held are dropped.
func (r *UDPRelay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	close(r.done)
	err := r.conn.Close()
	for _, f := range r.flows {
		f.upstream.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// readClients reads what clients send and queues it toward the target.
func (r *UDPRelay) readClients() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error from an earlier send; keep going
		}
		f := r.flow(from)
		if f == nil {
			continue
		}
		r.up.packets.Add(1)
		r.up.bytes.Add(int64(n))
		if f.upFate.lost() {
			r.up.lost.Add(1)
			continue
		}
		data := append([]byte(nil), buf[:n]...)
		f.upPipe.push(packet{due: time.Now().Add(f.upFate.delay()), data: data}, false)
	}
}

// flow finds or makes the flow of a client address; nil once closed or
// when no upstream socket can be had.
func (r *UDPRelay) flow(client netip.AddrPort) *udpFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if f, ok := r.flows[client]; ok {
		return f
	}
	upstream, err := net.DialUDP("udp", nil, r.target)
	if err != nil {
		return nil // no socket: this datagram goes nowhere, as on a dead path
	}
	f := &udpFlow{upstream: upstream, upFate: newFate(r.cfg.Link, r.nflows, true)}
	downFate := newFate(r.cfg.Link, r.nflows, false)
	r.nflows++
	f.upPipe = newPipe(udpHold, r.done, func(p packet) error {
		upstream.Write(p.data) // a refused datagram is lost, as on a network
		return nil
	})
	downPipe := newPipe(udpHold, r.done, func(p packet) error {
		r.conn.WriteToUDPAddrPort(p.data, client)
		return nil
	})
	r.flows[client] = f
	r.wg.Add(3)
	go func() { defer r.wg.Done(); _ = f.upPipe.run() }()
	go func() { defer r.wg.Done(); _ = downPipe.run() }()
	go func() { defer r.wg.Done(); r.readTarget(upstream, downFate, downPipe) }()
	return f
}

// readTarget reads what the target sends to one client and queues it back.
func (r *UDPRelay) readTarget(upstream *net.UDPConn, f *fate, p *pipe) {
	buf := make([]byte, 64<<10)
	for {
		n, err := upstream.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP port unreachable while the target is down
		}
		r.down.packets.Add(1)
		r.down.bytes.Add(int64(n))
		if f.lost() {
			r.down.lost.Add(1)
			continue
		}
		p.push(packet{due: time.Now().Add(f.delay()), data: append([]byte(nil), buf[:n]...)}, false)
	}
}
