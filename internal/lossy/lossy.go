// Package lossy puts a lossy, slow network between two endpoints on one
// machine, so that a test can compare UDP and TCP under the same conditions.
// Nothing on a server path uses it.
//
// A Link says what the network does to each packet, in each direction
// independently: it drops a share Loss of them, and delays the others by
// Delay plus a jitter drawn uniformly from [-Jitter, +Jitter] (a delay never
// goes below zero). Decisions come from a PCG generator seeded with
// Link.Seed, one stream per direction of each flow, so a given seed gives
// the same sequence of decisions for the same sequence of packets.
//
// A UDPRelay listens on an address and forwards datagrams to a target and
// back, through one upstream socket per client address, kept until Close
// (the target sees each client as a distinct address of the relay). Each
// datagram is dropped or delayed on its own, so jitter larger than the gap
// between datagrams reorders them, as on a real path. Up to 4 MiB per
// direction of a flow wait in the link; beyond that datagrams are dropped,
// as by a router's full queue.
//
// A TCPRelay listens, dials the target once per accepted connection, and
// copies both ways. TCP never loses data; it hides loss behind
// retransmission and keeps the stream in order, and that is what the relay
// reproduces:
//
//   - What it reads is cut into segments of at most Config.MSS bytes, each
//     due Delay ± Jitter after it was read.
//   - A lost segment (share Loss) arrives one retransmission timeout later:
//     RTO = max(MinRTO, 2·Delay + 4·Jitter), the floor of Linux (200 ms)
//     or srtt + 4·rttvar for the link's round trip, whichever is larger. A
//     retransmission is lost again with the same share, and each further
//     try waits twice as long as the one before (exponential backoff).
//   - A segment is never delivered before the one read before it: every
//     later segment waits behind a lost one (head-of-line blocking), and
//     jitter never reorders the stream.
//
// The model leaves out congestion control, fast retransmit (which on a busy
// stream repairs a loss after three duplicate acks, before the RTO) and
// delayed acks; for the small, steady frames of a game it is close to what
// a player behind such a link sees, and at worst a little pessimistic for
// TCP on a stream busy enough to trigger fast retransmit.
//
// Both relays are safe for concurrent use; Close stops every goroutine they
// started and closes every socket, and may be called more than once.
package lossy

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Link is what the network does to the packets of one direction. The zero
// Link forwards everything at once.
type Link struct {
	// Loss is the share of packets dropped, 0 to 1.
	Loss float64
	// Delay is the one-way delay of every packet that gets through.
	Delay time.Duration
	// Jitter spreads the delay uniformly over [Delay-Jitter, Delay+Jitter],
	// never below zero.
	Jitter time.Duration
	// Seed seeds the decisions (a seed like any other when zero).
	Seed uint64
}

// rttBound approximates, from above, Linux's srtt + 4·rttvar for a round
// trip over the link both ways: the base of the TCP relay's retransmission
// timeout.
func (l Link) rttBound() time.Duration { return 2*l.Delay + 4*l.Jitter }

// Config sets up a relay.
type Config struct {
	// Listen is the address the relay listens on ("127.0.0.2:0" picks a
	// free port).
	Listen string
	// Target is the address it forwards to.
	Target string
	// Link applies to each direction, with its own random stream.
	Link Link
	// MinRTO is the TCP relay's smallest retransmission timeout (200 ms,
	// as Linux).
	MinRTO time.Duration
	// MSS is the TCP relay's segment size in bytes (1460).
	MSS int
}

func (c Config) withDefaults() Config {
	if c.MinRTO <= 0 {
		c.MinRTO = 200 * time.Millisecond
	}
	if c.MSS <= 0 {
		c.MSS = 1460
	}
	return c
}

// rto is the TCP relay's first retransmission timeout.
func (c Config) rto() time.Duration { return max(c.MinRTO, c.Link.rttBound()) }

// Stats counts what a relay did, per direction ("up" is client to target).
type Stats struct {
	Up, Down DirStats
}

// DirStats counts one direction.
type DirStats struct {
	// Packets is how many datagrams (UDP) or segments (TCP) were read.
	Packets int64
	// Lost is how many of them the link lost: dropped for UDP, delivered
	// after a retransmission timeout for TCP.
	Lost int64
	// Bytes is how many bytes were read.
	Bytes int64
}

// counters is the atomic form of DirStats.
type counters struct{ packets, lost, bytes atomic.Int64 }

func (c *counters) stats() DirStats {
	return DirStats{Packets: c.packets.Load(), Lost: c.lost.Load(), Bytes: c.bytes.Load()}
}

// ErrClosed is returned by a relay's Close after the first.
var ErrClosed = errors.New("lossy: relay closed")

// fate draws the decisions of one direction of one flow. It is used by one
// goroutine only.
type fate struct {
	link Link
	rng  *rand.Rand
}

// newFate seeds a direction: flow numbers the flow within the relay, and
// each flow has two streams, up and down.
func newFate(link Link, flow uint64, up bool) *fate {
	stream := flow * 2
	if !up {
		stream++
	}
	return &fate{link: link, rng: rand.New(rand.NewPCG(link.Seed, stream))}
}

// lost draws whether a packet is lost.
func (f *fate) lost() bool {
	return f.link.Loss > 0 && f.rng.Float64() < f.link.Loss
}

// delay draws a packet's one-way delay.
func (f *fate) delay() time.Duration {
	d := f.link.Delay
	if j := f.link.Jitter; j > 0 {
		d += time.Duration(f.rng.Int64N(int64(2*j)+1)) - j
	}
	return max(d, 0)
}

// packet is data due at a time; eof marks the end of a TCP direction.
type packet struct {
	due  time.Time
	seq  uint64
	data []byte
	eof  bool
}

type packetHeap []packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = packet{}
	*h = old[:len(old)-1]
	return p
}

// pipe holds packets until they are due and hands them, in order of due
// time, to deliver, on its own goroutine (run).
type pipe struct {
	deliver func(packet) error
	limit   int           // most bytes held; push waits (TCP) or drops (UDP) beyond
	done    chan struct{} // closed to stop run and any push waiting
	wake    chan struct{} // a new packet may be due sooner
	space   chan struct{} // bytes were delivered

	mu    sync.Mutex // guards the fields below
	q     packetHeap
	bytes int
	seq   uint64
}

func newPipe(limit int, done chan struct{}, deliver func(packet) error) *pipe {
	return &pipe{deliver: deliver, limit: limit, done: done,
		wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// push queues a packet. With wait, it waits for room while the pipe holds
// more than its limit; without, it drops the packet then. It reports false
// when the packet was not queued.
func (p *pipe) push(pk packet, wait bool) bool {
	for {
		p.mu.Lock()
		if p.bytes < p.limit || pk.eof {
			pk.seq = p.seq
			p.seq++
			p.bytes += len(pk.data)
			heap.Push(&p.q, pk)
			p.mu.Unlock()
			signal(p.wake)
			return true
		}
		p.mu.Unlock()
		if !wait {
			return false
		}
		select {
		case <-p.space:
		case <-p.done:
			return false
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run delivers packets when due until done is closed, deliver fails (its
// error is returned), or a packet marked eof has been delivered.
func (p *pipe) run() error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		var wait time.Duration = time.Hour
		if len(p.q) > 0 {
			wait = time.Until(p.q[0].due)
			if wait <= 0 {
				pk := heap.Pop(&p.q).(packet)
				p.bytes -= len(pk.data)
				p.mu.Unlock()
				signal(p.space)
				if err := p.deliver(pk); err != nil || pk.eof {
					return err
				}
				continue
			}
		}
		p.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-p.wake:
		case <-timer.C:
		case <-p.done:
			return nil
		}
	}
}

// RelayIP is the loopback address a relay listens on in front of a server's
// UDP port on 127.0.0.1: the server announces it as its public address (a
// 1:1 NAT), so that every packet goes through the relay.
var RelayIP = net.IPv4(127, 0, 0, 2)

// FreeRelayPort finds a UDP port free on both 127.0.0.1 (the server's) and
// RelayIP (the relay's).
func FreeRelayPort() (int, error) {
	for range 20 {
		a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("lossy: %w", err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenUDP("udp", &net.UDPAddr{IP: RelayIP, Port: port})
		a.Close()
		if err == nil {
			b.Close()
			return port, nil
		}
	}
	return 0, errors.New("lossy: no UDP port free on both 127.0.0.1 and " + RelayIP.String())
}
