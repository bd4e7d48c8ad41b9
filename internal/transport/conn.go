// Package transport holds the server side of Tickwire's WebSocket
// connections: one reader (the caller of Read), a read limit, write and
// pong deadlines, ping control frames whose pongs give a smoothed round
// trip and jitter, and an outbox where state frames are latest-wins and
// reliable messages sit in a bounded queue whose overflow closes the
// connection with 1008 "slow consumer".
//
// A connection has no writer goroutine of its own while it is idle. A
// message is written at once by the goroutine that sends it, with one
// non-blocking write, when nothing else waits and the socket takes it
// whole; otherwise, and for pings (from a timer), a drain goroutine is
// started that writes what waits, in order, with blocking writes under
// the write deadline, and ends when nothing is left. An idle connection
// costs its reader goroutine, its buffers and a timer.
//
// # One writer per socket
//
// Every byte of a connection after the handshake, data or control frame,
// is written by this package, under the connection's write lock (wmu), by
// one party at a time: a sender writing at once, or the drain. A frame
// the socket took only in part is finished before anything else is
// written, so frames never interleave.
//
// gorilla/websocket only reads. Its own writes are kept off the socket:
// gorilla is handed the socket wrapped in a net.Conn (gorillaConn) whose
// Write, once the handshake response has gone, never reaches the socket,
// and whose write deadlines are ignored. The close frame gorilla's reader
// writes after a bad frame (1009 over the read limit, 1002 on a protocol
// error) is caught there, and the drain writes it after the frame it may
// be in the middle of; any other write by gorilla fails. The handlers of
// the peer's pings and close frames write nothing themselves: the drain
// answers them. No gorilla write method (WriteMessage, WriteControl,
// NextWriter) is ever called.
//
// Read must be called from one goroutine only; every other method of Conn is
// safe for concurrent use and never blocks on the network.
package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Config sets a connection's limits. Zero fields take the defaults.
type Config struct {
	ReadLimit    int64         // max bytes of one incoming message; over it the conn closes with 1009 (4096)
	PingInterval time.Duration // WebSocket ping control frames (2s)
	PongWait     time.Duration // no pong for this long and Read fails with a timeout (3 * PingInterval)
	WriteWait    time.Duration // deadline of each write (5s)
	QueueSize    int           // reliable messages waiting to be written (256)
	Text         bool          // send text frames instead of binary
	// CheckOrigin decides whether a browser's Origin is allowed; nil allows
	// only the request's own host.
	CheckOrigin func(*http.Request) bool
	// Counters, when set, add up the work of every connection made with
	// this Config (for metrics).
	Counters *Counters
	// OnRTT, when set, is told every round-trip sample (for metrics).
	OnRTT func(time.Duration)
}

// Counters are totals shared by many connections.
type Counters struct {
	BytesOut       atomic.Int64 // payload bytes of data frames written
	FramesOut      atomic.Int64 // data frames written
	StatesReplaced atomic.Int64 // state frames replaced before they were written
	SlowConsumers  atomic.Int64 // connections closed with 1008 slow consumer
}

func (c Config) withDefaults() Config {
	if c.ReadLimit <= 0 {
		c.ReadLimit = 4096
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 2 * time.Second
	}
	if c.PongWait <= 0 {
		c.PongWait = 3 * c.PingInterval
	}
	if c.WriteWait <= 0 {
		c.WriteWait = 5 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 256
	}
	return c
}

// Errors returned by Conn.
var (
	ErrSlowConsumer = errors.New("transport: slow consumer")
	ErrClosed       = errors.New("transport: connection closed")
)

// writeBuffers is shared by all connections so idle ones hold no write
// buffer.
var writeBuffers = &sync.Pool{}

// Conn is one server-side WebSocket connection.
type Conn struct {
	ws    *websocket.Conn
	cfg   Config
	start time.Time
	kind  int // websocket.BinaryMessage or TextMessage

	space chan struct{} // a drain took the queue (capacity 1), for Reply

	mu        sync.Mutex // guards the outbox fields below
	queue     []outgoing // reliable messages, in order; grows on demand up to QueueSize
	spare     []outgoing // the drain's previous batch, reused as the next queue
	state     []byte     // newest state frame's shared part, nil when none waits
	tail      [16]byte   // the receiver's own bytes appended to state
	tailLen   int
	partial   []byte // the rest of a frame writeNow could not finish
	pingDue   bool   // the ping timer fired
	pongData  string // a peer's ping to answer
	pongDue   bool
	closeEcho []byte // the close frame to echo to the peer
	refusal   []byte // the close frame gorilla's reader asked for after a bad frame
	readEnded bool   // Read failed: the connection ends after the echo or the refusal
	closing   bool   // no more messages are taken
	killed    bool   // abort: closeMsg goes before anything queued
	closeMsg  outgoing
	draining  bool // a drain goroutine is writing
	finished  bool // the socket is closed and done closed

	readBuf []byte // the last message Read returned; reader goroutine only

	// Every frame, data or control, is written by hand to raw, the socket
	// itself (gorilla has a gorillaConn that does not write). wmu is held
	// by whoever writes to the socket: a drain, or a sender writing at
	// once (writeNow).
	wmu      sync.Mutex
	raw      net.Conn
	direct   directWriter // non-blocking writes to the socket; nil when not possible (TLS)
	deadline time.Time    // write deadline in force; wmu

	pinger     *time.Timer
	kill       chan struct{} // closed by abort: Reply stops waiting
	killOnce   sync.Once
	readDone   chan struct{}
	readOnce   sync.Once
	done       chan struct{}
	srtt       atomic.Int64 // smoothed round trip, ns; 0 = no sample yet
	rttvar     atomic.Int64 // round-trip variation (jitter), ns
	bytesOut   atomic.Int64
	framesOut  atomic.Int64
	replaced   atomic.Int64
	closeCode  atomic.Int64
	remoteAddr string
}

// outgoing is a queued message, or a close frame when close is set.
type outgoing struct {
	data   []byte
	close  bool
	code   int
	reason string
}

// Upgrade turns an HTTP request into a Conn and sends its first ping.
func Upgrade(w http.ResponseWriter, r *http.Request, cfg Config) (*Conn, error) {
	cfg = cfg.withDefaults()
	up := websocket.Upgrader{
		ReadBufferSize:  256, // inputs are a few dozen bytes; bigger frames are read past the buffer
		WriteBufferPool: writeBuffers,
		CheckOrigin:     cfg.CheckOrigin,
	}
	hw := &hijacker{ResponseWriter: w}
	ws, err := up.Upgrade(hw, r, nil)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		ws:         ws,
		cfg:        cfg,
		start:      time.Now(),
		kind:       websocket.BinaryMessage,
		space:      make(chan struct{}, 1),
		kill:       make(chan struct{}),
		readDone:   make(chan struct{}),
		done:       make(chan struct{}),
		remoteAddr: r.RemoteAddr,
	}
	if cfg.Text {
		c.kind = websocket.TextMessage
	}
	ws.SetReadLimit(cfg.ReadLimit)
	c.extendReadDeadline()
	ws.SetPongHandler(c.onPong)
	ws.SetPingHandler(c.onPing)
	ws.SetCloseHandler(c.onClose)
	c.raw = hw.conn.Conn
	hw.conn.owner.Store(c) // from here on gorilla writes nothing to the socket
	c.direct = newDirectWriter(c.raw)
	c.pinger = time.AfterFunc(time.Hour, c.pingTime)
	c.pinger.Reset(0) // the first ping now, once pinger is set
	return c, nil
}

// RemoteAddr is the client's address as the HTTP server saw it.
func (c *Conn) RemoteAddr() string { return c.remoteAddr }

// Read returns the next data message. The slice is valid until the next
// call. It fails when the peer closes, when pongs stop (IsTimeout), on a
// frame over the read limit (the peer gets 1009) or a malformed frame (1002),
// or after Close. Those close frames are written by the drain, after any
// frame it is in the middle of.
func (c *Conn) Read() ([]byte, error) {
	if cap(c.readBuf) > 4096 {
		c.readBuf = nil // a large message was the exception: keep no big buffer
	}
	_, r, err := c.ws.NextReader()
	if err == nil {
		c.readBuf, err = readMessage(c.readBuf[:0], r)
	}
	if err != nil {
		c.readOnce.Do(func() {
			close(c.readDone)
			c.mu.Lock()
			c.readEnded = true
			c.mu.Unlock()
			c.kick()
		})
		return nil, err
	}
	return c.readBuf, nil
}

// readMessage appends r's bytes to b, growing it only as needed (messages
// are mostly a few dozen bytes).
func readMessage(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, make([]byte, max(64, cap(b)))...)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// IsTimeout reports whether Read failed because the peer stopped answering
// pings.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// CloseCode returns the close code the peer sent in err, or 0.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// Send queues a reliable message, or writes it at once when nothing else
// waits. It never blocks: when the queue is full the connection is closed
// with 1008 "slow consumer" and ErrSlowConsumer is returned.
func (c *Conn) Send(msg []byte) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.writeNowLocked(msg, nil, true) {
		return nil
	}
	if len(c.queue) >= c.cfg.QueueSize {
		c.mu.Unlock()
		if t := c.cfg.Counters; t != nil {
			t.SlowConsumers.Add(1)
		}
		c.abort(websocket.ClosePolicyViolation, "slow consumer")
		return ErrSlowConsumer
	}
	c.queue = append(c.queue, outgoing{data: msg})
	c.mu.Unlock()
	c.kick()
	return nil
}

// Reply queues an answer to the peer's own request (a pong, an error). Unlike
// Send it waits for room in the queue, so a peer that floods requests is
// slowed down instead of dropped; call it only from the reader goroutine.
func (c *Conn) Reply(msg []byte) error {
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return ErrClosed
		}
		if len(c.queue) < c.cfg.QueueSize {
			c.queue = append(c.queue, outgoing{data: msg})
			c.mu.Unlock()
			c.kick()
			return nil
		}
		c.mu.Unlock()
		select {
		case <-c.space:
		case <-c.done:
			return ErrClosed
		case <-c.kill:
			return ErrClosed
		}
	}
}

// SendState makes shared followed by tail the next state frame, replacing
// one that has not been written yet (latest wins). Neither is kept after it
// returns: a frame that must wait is copied. tail is at most 16 bytes.
//
// When nothing else waits and no drain is writing, the frame is written at
// once, on the caller's goroutine, without blocking: a room's tick writes
// its players' snapshots itself (see writeNow).
func (c *Conn) SendState(shared, tail []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.writeNowLocked(shared, tail, false) {
		return
	}
	c.setStateLocked(shared, tail)
	c.mu.Unlock()
	c.kick()
}

// writeNowLocked writes a message at once, on the caller's goroutine, when
// nothing else waits to be written and no drain is writing; it reports
// whether it took the message (c.mu, held on entry, is then released).
func (c *Conn) writeNowLocked(head, tail []byte, reliable bool) bool {
	idle := c.direct != nil && c.state == nil && len(c.queue) == 0 && c.partial == nil && !c.pongDue
	if !idle || !c.wmu.TryLock() {
		return false
	}
	c.mu.Unlock()
	done := c.writeNow(head, tail, reliable)
	c.wmu.Unlock()
	if !done {
		c.kick()
	}
	return true
}

// setStateLocked makes shared+tail the pending state frame.
func (c *Conn) setStateLocked(shared, tail []byte) {
	if c.state != nil {
		c.replaced.Add(1)
		if t := c.cfg.Counters; t != nil {
			t.StatesReplaced.Add(1)
		}
	}
	c.state = bytes.Clone(shared) // the caller reuses shared
	c.tailLen = copy(c.tail[:], tail)
}

// writeNow tries to write a frame with one non-blocking write; wmu is
// held and nothing else waits. It reports whether the frame is done with:
// written, or left for a drain (the rest of a partly written frame, or
// the whole message back in the outbox when nothing could be written),
// which must then be kicked.
func (c *Conn) writeNow(head, tail []byte, reliable bool) bool {
	n := len(head) + len(tail)
	written := 0
	if n <= maxCopy {
		bp := frames.Get().(*[]byte)
		defer frames.Put(bp)
		b := c.appendFrame((*bp)[:0], head, tail)
		*bp = b
		if written = c.direct.tryWrite(b); written == len(b) {
			c.wrote(n)
			return true
		}
		if written > 0 {
			c.wrote(n)
			c.mu.Lock()
			c.partial = append([]byte(nil), b[written:]...)
			c.mu.Unlock()
			return false
		}
	}
	// Socket full, deadline passed, broken, or a large frame: a drain
	// sees to it.
	c.mu.Lock()
	switch {
	case c.closing:
	case reliable:
		c.queue = append(c.queue, outgoing{data: head})
	case c.state == nil:
		c.setStateLocked(head, tail)
	}
	c.mu.Unlock()
	return false
}

// Close writes a close frame with code and reason after the messages
// already queued (a state frame still pending is dropped), then ends the
// connection. Later calls do nothing.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.queue = append(c.queue, outgoing{close: true, code: code, reason: reason})
	c.mu.Unlock()
	c.kick()
}

// Fail sends msg as the last message and closes with code: messages still
// waiting in the queue are dropped, since the peer is being sent away (a
// flood of requests fills the queue with answers, and the refusal must not
// be taken for a slow consumer's overflow). A frame already being written
// is finished first.
func (c *Conn) Fail(msg []byte, code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.queue = append(c.queue[:0], outgoing{data: msg}, outgoing{close: true, code: code, reason: reason})
	c.mu.Unlock()
	c.kick()
}

// abort closes at once, skipping queued messages. Only the first call
// chooses the close frame.
func (c *Conn) abort(code int, reason string) {
	c.killOnce.Do(func() {
		c.mu.Lock()
		c.closing, c.killed = true, true
		c.closeMsg = outgoing{close: true, code: code, reason: reason}
		c.mu.Unlock()
		close(c.kill)
		c.kick()
	})
}

// Done is closed once the connection is closed and its writes have ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// SentCloseCode is the close code the server sent, or 0 if none.
func (c *Conn) SentCloseCode() int { return int(c.closeCode.Load()) }

// RTT returns the smoothed round trip measured from ping control frames and
// its variation (jitter); both are 0 until the first pong.
func (c *Conn) RTT() (rtt, jitter time.Duration) {
	return time.Duration(c.srtt.Load()), time.Duration(c.rttvar.Load())
}

// Stats are counters of what a connection wrote.
type Stats struct {
	BytesOut       int64 // payload bytes of data frames written
	FramesOut      int64 // data frames written
	StatesReplaced int64 // state frames replaced before they were written
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats {
	return Stats{BytesOut: c.bytesOut.Load(), FramesOut: c.framesOut.Load(), StatesReplaced: c.replaced.Load()}
}

// extendReadDeadline gives the peer PongWait from now to send its next
// frame (a pong, at the latest).
func (c *Conn) extendReadDeadline() {
	_ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
}

// onPong runs on the reader goroutine: it extends the read deadline and
// folds the sample into the smoothed RTT (RFC 6298 weights).
func (c *Conn) onPong(payload string) error {
	c.extendReadDeadline()
	if len(payload) != 8 {
		return nil
	}
	sent := time.Duration(binary.BigEndian.Uint64([]byte(payload)))
	sample := time.Since(c.start) - sent
	if sample < 0 {
		return nil
	}
	if c.cfg.OnRTT != nil {
		c.cfg.OnRTT(sample)
	}
	srtt := time.Duration(c.srtt.Load())
	if srtt == 0 {
		c.srtt.Store(int64(sample))
		c.rttvar.Store(int64(sample / 2))
		return nil
	}
	diff := srtt - sample
	if diff < 0 {
		diff = -diff
	}
	c.rttvar.Store(int64((3*time.Duration(c.rttvar.Load()) + diff) / 4))
	c.srtt.Store(int64((7*srtt + sample) / 8))
	return nil
}

// onPing runs on the reader goroutine: a drain answers the peer's ping
// (gorilla's default handler would write the pong itself).
func (c *Conn) onPing(payload string) error {
	c.mu.Lock()
	c.pongData, c.pongDue = payload, true
	c.mu.Unlock()
	c.kick()
	return nil
}

// onClose runs on the reader goroutine when the peer closes: a drain echoes
// the close code before the connection ends (gorilla's default handler
// would write the echo itself).
func (c *Conn) onClose(code int, _ string) error {
	msg := []byte{}
	if code != websocket.CloseNoStatusReceived {
		msg = websocket.FormatCloseMessage(code, "")
	}
	c.mu.Lock()
	c.closeEcho = msg
	c.mu.Unlock()
	return nil
}

// pingTime runs on the timer's goroutine every PingInterval: the ping is
// written from here, this goroutine draining what waits.
func (c *Conn) pingTime() {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	c.drain()
}

// kick starts a drain goroutine unless one is writing; it will see what
// was added before the call.
func (c *Conn) kick() {
	c.mu.Lock()
	if c.draining || c.finished {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	go c.drain()
}

// drain writes whatever waits, in order, until nothing does, or ends the
// connection. One drain runs at a time (c.draining).
func (c *Conn) drain() {
	for {
		c.wmu.Lock()
		more, ok := c.writeWaiting()
		c.wmu.Unlock()
		if !ok {
			c.finish()
			return
		}
		if !more {
			return
		}
	}
}

// writeWaiting writes, holding wmu: the rest of a partly written frame, a
// pong, a ping, the queued messages in order, then the pending state (a
// new player's `joined` goes before the snapshot that shows it). Once Read
// has failed it writes the rest of a partly written frame and then only the
// close frame: the refusal of a bad frame (1009, 1002, as gorilla's reader
// asked) or the echo of the peer's close. It reports whether it wrote
// anything (else the drain has ended) and false in ok when the connection
// must end.
func (c *Conn) writeWaiting() (more, ok bool) {
	c.mu.Lock()
	if c.killed {
		m := c.closeMsg
		c.mu.Unlock()
		if c.writePartial() {
			c.writeClose(m, time.Second)
		}
		return false, false
	}
	partial, batch := c.partial, c.queue
	pong, pongDue, ping := c.pongData, c.pongDue, c.pingDue
	echo, ended := c.closeEcho, c.readEnded
	if partial == nil && len(batch) == 0 && !pongDue && !ping && c.state == nil && !ended {
		c.draining = false
		c.mu.Unlock()
		return false, true
	}
	refusal := c.refusal
	if ended {
		c.closing = true // nothing goes after the close frame
	}
	c.partial, c.queue = nil, c.spare[:0]
	c.pongDue, c.pingDue = false, false
	c.mu.Unlock()
	defer func() {
		clear(batch) // drop references to the written messages
		c.mu.Lock()
		c.spare = batch[:0]
		c.mu.Unlock()
	}()
	if partial != nil {
		c.armDeadline()
		if _, err := c.raw.Write(partial); err != nil {
			return false, false
		}
	}
	if ended {
		switch {
		case refusal != nil: // a bad frame: 1009, 1002
			if c.writeCloseFrame(refusal, time.Second) {
				c.linger()
			}
		case echo != nil:
			c.writeCloseFrame(echo, time.Second)
		default:
			c.linger()
		}
		return false, false
	}
	if pongDue && !c.writeControl(websocket.PongMessage, pong) {
		return false, false
	}
	if ping {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(time.Since(c.start)))
		if !c.writeControl(websocket.PingMessage, string(b[:])) {
			return false, false
		}
		c.pinger.Reset(c.cfg.PingInterval)
	}
	select {
	case c.space <- struct{}{}:
	default:
	}
	for _, m := range batch {
		select {
		case <-c.kill:
			return true, true // the next round writes the close frame
		default:
		}
		if m.close {
			c.writeClose(m, c.cfg.WriteWait)
			return false, false
		}
		if !c.writeFrame(m.data, nil) {
			return false, false
		}
	}
	// The state is taken after the queue is written, so it is the newest.
	c.mu.Lock()
	shared, tail, n := c.state, c.tail, c.tailLen
	c.state = nil
	c.mu.Unlock()
	if shared != nil && !c.writeFrame(shared, tail[:n]) {
		return false, false
	}
	return true, true
}

// linger lets the peer read what was written last (the close frame written
// after a bad frame, such as 1009) before the socket closes: closing a
// socket with unread input makes the kernel reset the connection, and a
// reset can destroy the peer's unread data. So the writing side is shut
// first, then what the peer still sends is read and dropped, for at most a
// second.
func (c *Conn) linger() {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, 1<<20))
}

// writePartial finishes a partly written frame before a close frame.
func (c *Conn) writePartial() bool {
	c.mu.Lock()
	p := c.partial
	c.partial = nil
	c.mu.Unlock()
	if p == nil {
		return true
	}
	c.setWriteDeadline(time.Second)
	_, err := c.raw.Write(p)
	return err == nil
}

// finish ends the connection, once: the socket closes, pings stop, the
// outbox empties and Done is closed.
func (c *Conn) finish() {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	c.finished, c.closing = true, true
	c.state, c.queue, c.partial = nil, nil, nil
	c.mu.Unlock()
	c.pinger.Stop()
	_ = c.ws.Close()
	close(c.done)
}

// directWriter writes to a socket without ever blocking (direct_*.go).
type directWriter interface {
	// tryWrite writes what the socket takes of b at once and returns how
	// much that was (0 when it is full, closed or past its deadline).
	tryWrite(b []byte) int
}

// frames holds buffers for building frames; idle connections hold none.
var frames = sync.Pool{New: func() any { return new([]byte) }}

// maxCopy is the largest payload copied into one buffer with its header;
// larger ones are written in two parts.
const maxCopy = 64 << 10

// writeFrame writes one unmasked data frame made of head followed by tail,
// with a single write for ordinary sizes; wmu is held.
func (c *Conn) writeFrame(head, tail []byte) bool {
	n := len(head) + len(tail)
	bp := frames.Get().(*[]byte)
	defer frames.Put(bp)
	b := c.appendFrame((*bp)[:0], head, tail)
	parts := [][]byte{head, tail}
	if n <= maxCopy {
		parts = nil
	}
	*bp = b
	c.armDeadline()
	if _, err := c.raw.Write(b); err != nil {
		return false
	}
	for _, p := range parts {
		if _, err := c.raw.Write(p); err != nil {
			return false
		}
	}
	c.wrote(n)
	return true
}

// writeControl writes a ping or pong frame by hand, as data frames are
// (gorilla's WriteControl starts a timer for every frame); wmu is held.
// Payloads of control frames are at most 125 bytes: longer ones are cut.
func (c *Conn) writeControl(opcode int, payload string) bool {
	c.armDeadline()
	return c.writeControlFrame(opcode, payload)
}

// writeControlFrame writes a control frame under the deadline in force;
// wmu is held.
func (c *Conn) writeControlFrame(opcode int, payload string) bool {
	payload = payload[:min(len(payload), 125)]
	bp := frames.Get().(*[]byte)
	defer frames.Put(bp)
	b := append((*bp)[:0], 0x80|byte(opcode), byte(len(payload)))
	b = append(b, payload...)
	*bp = b
	_, err := c.raw.Write(b)
	return err == nil
}

// writeCloseFrame writes a close frame with payload (a code and a reason,
// or nothing) within wait and records its code; wmu is held.
func (c *Conn) writeCloseFrame(payload []byte, wait time.Duration) bool {
	code := 0
	if len(payload) >= 2 {
		code = int(binary.BigEndian.Uint16(payload))
	}
	c.closeCode.Store(int64(code))
	c.setWriteDeadline(wait)
	return c.writeControlFrame(websocket.CloseMessage, string(payload))
}

// appendFrame appends the header of an unmasked data frame of head
// followed by tail, and the payload itself up to maxCopy bytes.
func (c *Conn) appendFrame(b, head, tail []byte) []byte {
	n := len(head) + len(tail)
	b = append(b, 0x80|byte(c.kind)) // FIN and the opcode
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if n <= maxCopy {
		b = append(append(b, head...), tail...)
	}
	return b
}

// armDeadline sets the write deadline of a drain's blocking writes,
// re-arming it only once half of it is spent; wmu is held.
func (c *Conn) armDeadline() {
	if time.Until(c.deadline) < c.cfg.WriteWait/2 {
		c.setWriteDeadline(c.cfg.WriteWait)
	}
}

// setWriteDeadline sets the deadline of the socket's writes to wait from
// now, remembered for armDeadline; wmu is held.
func (c *Conn) setWriteDeadline(wait time.Duration) {
	c.deadline = time.Now().Add(wait)
	_ = c.raw.SetWriteDeadline(c.deadline)
}

// wrote counts a data frame of n bytes.
func (c *Conn) wrote(n int) {
	c.bytesOut.Add(int64(n))
	c.framesOut.Add(1)
	if t := c.cfg.Counters; t != nil {
		t.BytesOut.Add(int64(n))
		t.FramesOut.Add(1)
	}
}

// writeClose sends a close frame and waits a little for the peer's answer,
// which the reader sees, so the peer reads the code before the socket goes;
// wmu is held. A reason is cut to fit a control frame, on a rune boundary.
func (c *Conn) writeClose(m outgoing, wait time.Duration) {
	reason := m.reason
	if len(reason) > 123 {
		i := 123
		for i > 0 && !utf8.RuneStart(reason[i]) {
			i--
		}
		reason = reason[:i]
	}
	if !c.writeCloseFrame(websocket.FormatCloseMessage(m.code, reason), wait) {
		return
	}
	select {
	case <-c.readDone:
	case <-time.After(time.Second):
	}
}

// hijacker hands gorilla's upgrader the hijacked socket wrapped in a
// gorillaConn, kept in conn.
type hijacker struct {
	http.ResponseWriter
	conn *gorillaConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &gorillaConn{Conn: nc}
	return h.conn, brw, nil
}

// gorillaConn is the socket as gorilla sees it: reads go to the socket,
// writes do not, once owner is set (after the handshake response). Of
// gorilla's writes only the close frame its reader sends after a bad frame
// is expected; it is handed to the owner, whose drain writes it. Write
// deadlines are ignored: the socket's are the owner's.
type gorillaConn struct {
	net.Conn
	owner atomic.Pointer[Conn]
}

// errNotTheWriter is what gorilla gets for any write but a close frame.
var errNotTheWriter = errors.New("transport: gorilla does not write to the socket")

func (g *gorillaConn) Write(b []byte) (int, error) {
	c := g.owner.Load()
	if c == nil {
		return g.Conn.Write(b) // the handshake response
	}
	// One unmasked server control frame, whole, as WriteControl makes it.
	if len(b) < 2 || b[0] != 0x80|websocket.CloseMessage || int(b[1]) != len(b)-2 {
		return 0, errNotTheWriter
	}
	c.mu.Lock()
	if c.refusal == nil {
		c.refusal = bytes.Clone(b[2:]) // not nil, even when empty
	}
	c.mu.Unlock()
	return len(b), nil // Read fails next and kicks the drain
}

func (g *gorillaConn) SetWriteDeadline(t time.Time) error {
	if g.owner.Load() == nil {
		return g.Conn.SetWriteDeadline(t)
	}
	return nil
}
