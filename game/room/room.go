// Package room is the engine that runs one game room: a single goroutine
// owns the room's game (a game.Mode) and its seats, ticks it on a
// fixed-step schedule, and fans the tables the mode writes out to every
// player's client: one shared encoding for the players on full snapshots,
// and one delta frame per distinct baseline for those on delta snapshots.
// It never depends on a concrete mode.
//
// Every exported method of Room is safe for concurrent use. Work that
// changes the room (joins, leaves, chat) is handed to the room goroutine
// through its inbox; inputs go to a latest-wins slot per seat that the next
// tick reads.
package room

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/wire"
)

// Client is what the room needs of a player's connection.
type Client interface {
	// Send queues a reliable message; an error means the client is gone.
	Send(msg []byte) error
	// SendState replaces the client's pending state frame with shared
	// followed by tail. It keeps neither after it returns (the room
	// reuses them): a frame that must wait is copied.
	SendState(shared, tail []byte)
	// Close ends the connection with a WebSocket close code.
	Close(code int, reason string)
	// RTT is the client's smoothed round trip.
	RTT() (rtt, jitter time.Duration)
}

// DeltaClient is a Client that may ask for delta snapshots (`join` with
// caps ["delta"], an addition to the protocol). When WantsDelta is true the
// room sends it `delta` frames instead of `snap`: a keyframe on join and on
// resume, then deltas against the newest snapshot it acknowledged through
// Seat.AckSnapshot, with a keyframe again when that is more than
// wire.DeltaHistory ticks old and every DeltaKeyframeEvery.
type DeltaClient interface {
	Client
	WantsDelta() bool
}

// DeltaKeyframeEvery is how often a delta client gets a keyframe even when
// its acks are current.
const DeltaKeyframeEvery = 5 * time.Second

func wantsDelta(c Client) bool {
	dc, ok := c.(DeltaClient)
	return ok && dc.WantsDelta()
}

// Observer receives a room's events, in order, on the room goroutine. It
// must not block. Spectator feeds implement it.
type Observer interface {
	// Opened is called once, before any other event.
	Opened(info wire.SpectatorRoom)
	Joined(m *wire.Joined)
	Left(m *wire.Left)
	Chat(m *wire.ChatLine)
	// Snap is called at every tick with the tables of the mode's schema;
	// they are reused afterwards.
	Snap(n uint64, st int64, tables []wire.Table)
	// Closed is the last call.
	Closed(reason string)
}

// Observers hands each event to several observers, in order: the first
// has it before the second is called.
type Observers []Observer

// Opened calls Opened of every observer.
func (os Observers) Opened(info wire.SpectatorRoom) {
	for _, o := range os {
		o.Opened(info)
	}
}

// Joined calls Joined of every observer.
func (os Observers) Joined(m *wire.Joined) {
	for _, o := range os {
		o.Joined(m)
	}
}

// Left calls Left of every observer.
func (os Observers) Left(m *wire.Left) {
	for _, o := range os {
		o.Left(m)
	}
}

// Chat calls Chat of every observer.
func (os Observers) Chat(m *wire.ChatLine) {
	for _, o := range os {
		o.Chat(m)
	}
}

// Snap calls Snap of every observer.
func (os Observers) Snap(n uint64, st int64, tables []wire.Table) {
	for _, o := range os {
		o.Snap(n, st, tables)
	}
}

// Closed calls Closed of every observer.
func (os Observers) Closed(reason string) {
	for _, o := range os {
		o.Closed(reason)
	}
}

// Config sets up a room. Zero fields take the defaults.
type Config struct {
	ID string
	// Mode is the room's game; required, validated (game.Spec.Validate).
	Mode *game.Spec
	// Seed seeds the mode's randomness (zero: from the clock).
	Seed       uint64
	Private    bool // not listed and not picked by matchmaking
	Hz         int  // ticks per second (30)
	MaxPlayers int  // seats (16)
	Grace      time.Duration
	Idle       time.Duration // an empty room ends after this long (30s)
	Observer   Observer      // optional
	// Phase, in (0, 1), places the room's ticks within the tick period,
	// counted from the Unix epoch: rooms of one process given different
	// phases tick at different moments instead of wherever their creation
	// fell (a burst of rooms made at once would all tick together, and the
	// last of them late). Zero: the ticks follow the room's start.
	Phase float64
	// OnTick, when set, is told each tick's duration and whether it
	// overran its period, on the room goroutine (for metrics).
	OnTick func(d time.Duration, overrun bool)
	// OnLate, when set, is told at each tick how late it starts after its
	// moment in the schedule, the period, and how many ticks were skipped
	// before it (for overload detection), on the room goroutine.
	OnLate func(late, period time.Duration, skipped int)
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Hz <= 0 {
		c.Hz = 30
	}
	if c.MaxPlayers <= 0 {
		c.MaxPlayers = 16
	}
	if c.Grace <= 0 {
		c.Grace = 15 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Errors of Join and Resume.
var (
	ErrRoomFull   = errors.New("room: full")
	ErrRoomClosed = errors.New("room: closed")
	ErrNoSeat     = errors.New("room: no seat held for this resume token")
)

// Info describes a room for listings.
type Info struct {
	ID         string `json:"id"`
	Mode       string `json:"mode"`
	Players    int    `json:"players"`
	MaxPlayers int    `json:"maxPlayers"`
	Spectators int    `json:"spectators"`
	Hz         int    `json:"hz"`
	Private    bool   `json:"private,omitempty"`
}

// Stats are the room's tick counters.
type Stats struct {
	Ticks    uint64        // ticks run
	Skipped  uint64        // ticks skipped after a stall
	Overruns uint64        // ticks that took longer than their period
	LastTick time.Duration // duration of the newest tick
	MaxTick  time.Duration // longest tick so far
}

// Room is a running room. Create it with New and start Run.
type Room struct {
	cfg   Config
	dt    time.Duration
	inbox chan func()
	done  chan struct{}

	seatsTaken atomic.Int32 // seats connected or held, for listings
	spectators atomic.Int32
	ticks      atomic.Uint64
	skipped    atomic.Uint64
	overruns   atomic.Uint64
	lastTick   atomic.Int64
	maxTick    atomic.Int64

	schema *wire.Schema // the mode's tables and inputs

	// Owned by the room goroutine.
	mode    game.Mode
	frame   *game.Frame // the mode writes each tick's tables here
	seats   []*Seat     // in ID order
	nextID  uint32
	enc     *wire.SnapEncoder
	emptyAt time.Time // when the room became empty; zero while occupied
	zeros   []float64 // the input of a player without a connection
	rttNext int       // where rttOf looks first
	input   []float64 // a seat's input on its way to the mode

	// Delta snapshots: the quantized state of recent ticks, by tick modulo
	// the history size (kept while any delta client is connected), and
	// this tick's frames, one per distinct baseline.
	dcodec  *wire.DeltaCodec
	dhist   [wire.DeltaHistory]wire.DeltaState
	denc    *wire.DeltaEncoder
	dframes []deltaFrame
}

// Seat is a player's place in a room. The session that joined holds it to
// send inputs; its other fields belong to the room goroutine.
type Seat struct {
	ID   uint32
	Name string

	inputs []string // the mode's input names

	mu    sync.Mutex // guards the pending input
	input [wire.MaxInputFields]float64
	seq   uint64 // the pending input's seq
	fresh bool   // input not yet applied
	seen  bool   // an input was accepted on this connection
	last  uint64 // newest seq accepted

	typingAt atomic.Int64 // Unix ns of the last `typing` forwarded (TypingDue)

	client    Client
	token     string
	ack       uint64
	heldUntil time.Time // zero while connected
	heldWhy   string

	// Delta snapshots. snapAck (the newest snapshot acknowledged) and
	// ackFrom (the connection whose acks count) are guarded by mu.
	delta   bool   // the client gets delta frames
	keyAt   uint64 // tick of the newest keyframe sent
	snapAck uint64
	ackFrom Client
}

// deltaFrame is a delta frame encoded for one baseline (0: a keyframe).
type deltaFrame struct {
	base  uint64
	frame []byte
}

// New returns a room; it does nothing until Run. cfg.Mode must be set.
func New(cfg Config) *Room {
	cfg = cfg.withDefaults()
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	schema := cfg.Mode.Schema()
	r := &Room{
		cfg:    cfg,
		dt:     time.Second / time.Duration(cfg.Hz),
		inbox:  make(chan func(), 64),
		done:   make(chan struct{}),
		schema: schema,
		mode:   cfg.Mode.New(cfg.Seed),
		frame:  game.NewFrame(schema),
		enc:    wire.NewSnapEncoder(),
		zeros:  make([]float64, len(schema.Input)),
		input:  make([]float64, len(schema.Input)),
		dcodec: wire.NewDeltaCodec(schema, cfg.Hz),
	}
	r.denc = wire.NewDeltaEncoder(r.dcodec)
	r.frame.SetRTT(r.rttOf)
	return r
}

// ID returns the room id.
func (r *Room) ID() string { return r.cfg.ID }

// Info returns the room's listing.
func (r *Room) Info() Info {
	return Info{
		ID: r.cfg.ID, Mode: r.cfg.Mode.Name, Players: int(r.seatsTaken.Load()),
		MaxPlayers: r.cfg.MaxPlayers, Spectators: int(r.spectators.Load()),
		Hz: r.cfg.Hz, Private: r.cfg.Private,
	}
}

// AddSpectators adjusts the spectator count shown in listings.
func (r *Room) AddSpectators(n int) { r.spectators.Add(int32(n)) }

// FreeSeats is the number of seats neither connected nor held.
func (r *Room) FreeSeats() int { return r.cfg.MaxPlayers - int(r.seatsTaken.Load()) }

// Mode returns the name of the room's game mode.
func (r *Room) Mode() string { return r.cfg.Mode.Name }

// Private reports whether the room is hidden from listings and matchmaking.
func (r *Room) Private() bool { return r.cfg.Private }

// Done is closed when the room has ended.
func (r *Room) Done() <-chan struct{} { return r.done }

// Stats returns the tick counters.
func (r *Room) Stats() Stats {
	return Stats{
		Ticks: r.ticks.Load(), Skipped: r.skipped.Load(), Overruns: r.overruns.Load(),
		LastTick: time.Duration(r.lastTick.Load()), MaxTick: time.Duration(r.maxTick.Load()),
	}
}

// do runs f on the room goroutine and waits for it.
func (r *Room) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case r.inbox <- func() { f(); close(ran) }:
	case <-r.done:
		return ErrRoomClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ran:
		return nil
	case <-r.done:
		return ErrRoomClosed
	}
}

// post hands f to the room goroutine without waiting for it to run.
func (r *Room) post(ctx context.Context, f func()) error {
	select {
	case r.inbox <- f:
		return nil
	case <-r.done:
		return ErrRoomClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Join gives c a new seat named name, sends it `welcome` and announces it
// to the others.
func (r *Room) Join(ctx context.Context, c Client, name string) (*Seat, error) {
	var seat *Seat
	var err error
	if e := r.do(ctx, func() { seat, err = r.join(c, name) }); e != nil {
		return nil, e
	}
	return seat, err
}

// Resume gives c back the seat held for token, with its id and score and
// without announcing anything. A connection still on that seat is closed.
func (r *Room) Resume(ctx context.Context, c Client, token string) (*Seat, error) {
	var seat *Seat
	if err := r.do(ctx, func() { seat = r.resume(c, token) }); err != nil {
		return nil, err
	}
	if seat == nil {
		return nil, ErrNoSeat
	}
	return seat, nil
}

// RoomOfToken returns the room id a resume token belongs to.
func RoomOfToken(token string) string {
	id, _, _ := strings.Cut(token, ".")
	return id
}

// Input stores the seat's newest input for the next tick; an input whose
// seq is not above the newest one is ignored. A field the mode does not
// declare is refused with a *wire.FieldError (the input is dropped); a
// declared field that is missing counts as 0.
func (s *Seat) Input(in *wire.Input) error {
	var vals [wire.MaxInputFields]float64
	for _, f := range in.Fields.All() {
		i := slices.Index(s.inputs, f.Name)
		if i < 0 {
			return &wire.FieldError{Type: wire.TypeInput, Field: f.Name, Why: "not an input field of this mode"}
		}
		vals[i] = f.Value
	}
	s.mu.Lock()
	if !s.seen || in.Seq > s.last {
		s.input, s.seq, s.last, s.fresh, s.seen = vals, in.Seq, in.Seq, true, true
	}
	s.mu.Unlock()
	return nil
}

// Inputs returns the names of the mode's input fields.
func (s *Seat) Inputs() []string { return s.inputs }

// AckSnapshot records that the connection c, if it still holds the seat,
// has the snapshot of tick n: later delta frames may use it as their
// baseline. n = 0 asks for a keyframe.
func (s *Seat) AckSnapshot(c Client, n uint64) {
	s.mu.Lock()
	if s.ackFrom == c {
		s.snapAck = n
	}
	s.mu.Unlock()
}

// Chat sends a chat line from the seat to everyone in the room.
func (r *Room) Chat(ctx context.Context, s *Seat, c Client, text string) error {
	return r.post(ctx, func() {
		if s.client != c {
			return
		}
		m := &wire.ChatLine{ID: s.ID, Name: s.Name, Text: text, ST: time.Now().UnixMilli()}
		// The feed first, as for snapshots: a player who reads the line
		// and then asks the feed finds it there.
		if o := r.cfg.Observer; o != nil {
			o.Chat(m)
		}
		r.broadcast(wire.MustEncode(m), nil)
	})
}

// TypingEvery is how often a player's `typing` is forwarded at most
// (contract 1.1); the others are dropped.
const TypingEvery = time.Second

// TypingDue reports whether a `typing` of the seat's player at now is to be
// forwarded: none was within TypingEvery before it. It counts the ones it
// lets through, for the seat, whichever connection holds it.
func (s *Seat) TypingDue(now time.Time) bool {
	t := now.UnixNano()
	for {
		last := s.typingAt.Load()
		if last != 0 && t-last < int64(TypingEvery) {
			return false
		}
		if s.typingAt.CompareAndSwap(last, t) {
			return true
		}
	}
}

// Typing tells everyone but the seat's player that it is typing.
func (r *Room) Typing(ctx context.Context, s *Seat, c Client) error {
	return r.post(ctx, func() {
		if s.client == c {
			r.broadcast(wire.MustEncode(&wire.TypingFrom{ID: s.ID}), s)
		}
	})
}

// Leave frees the seat held by c at once and announces `left` with reason
// (wire.LeftLeave, or wire.LeftKicked for a player sent away).
func (r *Room) Leave(ctx context.Context, s *Seat, c Client, reason string) error {
	return r.do(ctx, func() {
		if s.client == c {
			r.remove(s, reason)
		}
	})
}

// Disconnect holds the seat for the grace period after c went away
// unexpectedly; reason ("disconnect" or "timeout") is announced if the seat
// is not resumed in time. It does nothing if c no longer holds the seat.
func (r *Room) Disconnect(ctx context.Context, s *Seat, c Client, reason string) error {
	return r.post(ctx, func() { r.disconnect(s, c, reason, time.Now()) })
}

func (r *Room) disconnect(s *Seat, c Client, reason string, now time.Time) {
	if s.client != c {
		return
	}
	s.client = nil
	s.heldUntil = now.Add(r.cfg.Grace)
	s.heldWhy = reason
	r.mode.Input(s.ID, r.zeros)
}

func (r *Room) join(c Client, name string) (*Seat, error) {
	if len(r.seats) >= r.cfg.MaxPlayers {
		return nil, ErrRoomFull
	}
	r.nextID++
	s := &Seat{ID: r.nextID, Name: name, client: c, token: r.cfg.ID + "." + randomHex(16),
		delta: wantsDelta(c), ackFrom: c, inputs: r.schema.Input}
	r.mode.Join(s.ID)
	r.seats = append(r.seats, s)
	r.seatsTaken.Store(int32(len(r.seats)))
	r.emptyAt = time.Time{}
	m := &wire.Joined{ID: s.ID, Name: name}
	if o := r.cfg.Observer; o != nil {
		o.Joined(m)
	}
	r.broadcast(wire.MustEncode(m), s)
	r.welcome(s)
	return s, nil
}

func (r *Room) resume(c Client, token string) *Seat {
	for _, s := range r.seats {
		if s.token != token {
			continue
		}
		if s.client != nil {
			s.client.Close(wire.CloseNormal, "resumed on another connection")
		}
		s.client = c
		s.heldUntil = time.Time{}
		// The new connection numbers its inputs afresh.
		s.mu.Lock()
		s.seen, s.last, s.fresh = false, 0, false
		// It holds no snapshot yet: its first delta frame is a keyframe.
		s.snapAck, s.ackFrom = 0, c
		s.mu.Unlock()
		s.ack = 0
		s.delta, s.keyAt = wantsDelta(c), 0
		r.welcome(s)
		return s
	}
	return nil
}

func (r *Room) welcome(s *Seat) {
	f := r.cfg.Mode.Field
	players := r.playerInfos()
	_ = s.client.Send(wire.MustEncode(&wire.Welcome{
		ID: s.ID, Room: r.cfg.ID, Hz: r.cfg.Hz, W: f.W, H: f.H, Speed: f.Speed,
		R: f.R, Resume: s.token, ST: time.Now().UnixMilli(), Players: players,
		Mode: r.cfg.Mode.Name, Schema: r.schema,
	}))
}

func (r *Room) playerInfos() []wire.PlayerInfo {
	players := make([]wire.PlayerInfo, len(r.seats))
	for i, p := range r.seats {
		players[i] = wire.PlayerInfo{ID: p.ID, Name: p.Name}
	}
	return players
}

// remove frees a seat and announces it.
func (r *Room) remove(s *Seat, reason string) {
	for i, p := range r.seats {
		if p == s {
			r.seats = append(r.seats[:i], r.seats[i+1:]...)
			break
		}
	}
	s.client = nil
	r.mode.Leave(s.ID)
	r.seatsTaken.Store(int32(len(r.seats)))
	if len(r.seats) == 0 {
		r.emptyAt = time.Now()
	}
	m := &wire.Left{ID: s.ID, Reason: reason}
	if o := r.cfg.Observer; o != nil {
		o.Left(m)
	}
	r.broadcast(wire.MustEncode(m), nil)
}

// broadcast sends a reliable message to every connected seat but except.
func (r *Room) broadcast(msg []byte, except *Seat) {
	for _, s := range r.seats {
		if s != except && s.client != nil {
			_ = s.client.Send(msg)
		}
	}
}

// Run runs the room until ctx ends (players get close 1001) or the room
// has been empty for the idle time. A panic in the room ends the room, not
// the process. Run closes Done when it returns.
func (r *Room) Run(ctx context.Context) {
	reason := "idle"
	defer func() {
		if p := recover(); p != nil {
			r.cfg.Logger.Error("room crashed", "room", r.cfg.ID, "panic", p)
			reason = "crashed"
			r.closeAll(wire.CodeClosed, "the room crashed", wire.CloseGoingAway)
		}
		if o := r.cfg.Observer; o != nil {
			o.Closed(reason)
		}
		close(r.done)
	}()
	if o := r.cfg.Observer; o != nil {
		f := r.cfg.Mode.Field
		o.Opened(wire.SpectatorRoom{ID: r.cfg.ID, Hz: r.cfg.Hz, W: f.W, H: f.H, Players: r.playerInfos(),
			Mode: r.cfg.Mode.Name, Schema: r.schema})
	}
	r.emptyAt = time.Now()
	start := r.scheduleStart(time.Now())
	var n uint64
	timer := time.NewTimer(time.Until(start.Add(r.dt)))
	defer timer.Stop()
	for {
		select {
		case f := <-r.inbox:
			f()
		case <-timer.C:
			now := time.Now()
			// The schedule is start + n*dt: ticks missed during a stall
			// are skipped, not run in a burst.
			due := uint64(now.Sub(start) / r.dt)
			skipped := uint64(0)
			if due > n+1 {
				skipped = due - n - 1
				r.skipped.Add(skipped)
			}
			if r.cfg.OnLate != nil {
				// How late the next tick of the schedule starts.
				r.cfg.OnLate(now.Sub(start.Add(time.Duration(n+1)*r.dt)), r.dt, int(skipped))
			}
			n = max(due, n+1)
			r.tick(n, now)
			if !r.emptyAt.IsZero() && now.Sub(r.emptyAt) >= r.cfg.Idle {
				return
			}
			timer.Reset(time.Until(start.Add(time.Duration(n+1) * r.dt)))
		case <-ctx.Done():
			reason = "shutdown"
			r.closeAll("", "", wire.CloseGoingAway)
			return
		}
	}
}

// scheduleStart returns the time the tick schedule counts from: now, or
// with a phase, the latest moment at or before now that lies at that
// fraction of a period after a multiple of the period since the epoch.
func (r *Room) scheduleStart(now time.Time) time.Time {
	if r.cfg.Phase <= 0 || r.cfg.Phase >= 1 {
		return now
	}
	offset := time.Duration(r.cfg.Phase * float64(r.dt))
	since := (time.Duration(now.UnixNano()) - offset) % r.dt
	if since < 0 {
		since += r.dt
	}
	return now.Add(-since)
}

// closeAll closes every connected player, with an error message first when
// code is set.
func (r *Room) closeAll(code, msg string, closeCode int) {
	for _, s := range r.seats {
		if s.client == nil {
			continue
		}
		if code != "" {
			_ = s.client.Send(wire.MustEncode(&wire.Error{Code: code, Msg: msg}))
		}
		s.client.Close(closeCode, msg)
	}
}

// tick applies the newest inputs, steps the mode, expires held seats and
// sends the snapshot.
func (r *Room) tick(n uint64, now time.Time) {
	t0 := time.Now()
	for _, s := range r.seats {
		s.mu.Lock()
		seq, fresh := s.seq, s.fresh
		if fresh {
			copy(r.input, s.input[:])
		}
		s.fresh = false
		s.mu.Unlock()
		if fresh && s.client != nil {
			r.mode.Input(s.ID, r.input)
			s.ack = seq
		}
	}
	r.mode.Step(r.dt.Seconds())
	for i := 0; i < len(r.seats); i++ {
		if s := r.seats[i]; s.client == nil && now.After(s.heldUntil) {
			r.remove(s, s.heldWhy)
			i--
		}
	}
	r.sendSnapshot(n, now.UnixMilli())
	d := time.Since(t0)
	r.ticks.Add(1)
	r.lastTick.Store(int64(d))
	if int64(d) > r.maxTick.Load() {
		r.maxTick.Store(int64(d))
	}
	if d > r.dt {
		r.overruns.Add(1)
	}
	if r.cfg.OnTick != nil {
		r.cfg.OnTick(d, d > r.dt)
	}
}

// rttOf returns the round trip of a connected player in ms, 0 when
// unknown (for game.Frame.RTT). Modes write their players in id order, as
// the seats are: the seat after the one found last is tried first.
func (r *Room) rttOf(id uint32) int {
	i := r.rttNext
	if i >= len(r.seats) || r.seats[i].ID != id {
		var ok bool
		if i, ok = slices.BinarySearchFunc(r.seats, id, func(s *Seat, id uint32) int { return cmp.Compare(s.ID, id) }); !ok {
			return 0
		}
	}
	r.rttNext = i + 1
	if r.seats[i].client == nil {
		return 0
	}
	if d, _ := r.seats[i].client.RTT(); d > 0 {
		// Known round trips are at least 1 ms: 0 means unknown.
		return max(1, int((d+time.Millisecond/2)/time.Millisecond))
	}
	return 0
}

// writeTables has the mode write this tick's tables and puts the rows of
// its keyed tables in id order. A mode that writes an id twice in one
// keyed table panics (its room ends as for any bug in a tick).
func (r *Room) writeTables() []wire.Table {
	r.frame.Reset()
	r.rttNext = 0
	r.mode.Write(r.frame)
	tables := r.frame.Tables()
	for i := range tables {
		if !r.schema.Tables[i].Slots {
			sortRows(&tables[i], r.schema.Tables[i].Name)
		}
	}
	return tables
}

// sortRows sorts a table's rows by id unless they already are.
func sortRows(t *wire.Table, name string) {
	n := t.Len()
	i := 1
	for i < n && t.ID(i-1) < t.ID(i) {
		i++
	}
	if i == n {
		return // ascending, so no id twice
	}
	sort.Sort(rowSorter{t})
	for i := 1; i < n; i++ {
		if t.ID(i-1) == t.ID(i) {
			panic(fmt.Sprintf("room: the mode wrote id %d twice in table %s", t.ID(i), name))
		}
	}
}

// rowSorter sorts a table's rows by id in place.
type rowSorter struct{ t *wire.Table }

func (s rowSorter) Len() int           { return s.t.Len() }
func (s rowSorter) Less(i, j int) bool { return s.t.ID(i) < s.t.ID(j) }
func (s rowSorter) Swap(i, j int) {
	a, b := s.t.Row(i), s.t.Row(j)
	for k := range a {
		a[k], b[k] = b[k], a[k]
	}
}

// sendSnapshot has the mode write its tables, encodes them once and hands
// them to every player with that player's ack appended.
func (r *Room) sendSnapshot(n uint64, st int64) {
	tables := r.writeTables()
	// Spectators first: the feed only keeps a copy, and a player who reads
	// this snapshot and then asks the feed finds it there.
	if o := r.cfg.Observer; o != nil {
		o.Snap(n, st, tables)
	}
	var shared []byte
	deltas := false
	for _, s := range r.seats {
		if s.client == nil {
			continue
		}
		if s.delta {
			deltas = true
			continue
		}
		if shared == nil {
			shared = r.enc.Shared(n, st, r.schema, tables)
		}
		s.client.SendState(shared, r.enc.Ack(s.ack))
	}
	if deltas {
		r.sendDeltas(n, st, tables)
	}
}

// sendDeltas hands every delta client this tick's state relative to the
// newest snapshot it acknowledged, encoding one frame per distinct baseline.
func (r *Room) sendDeltas(n uint64, st int64, tables []wire.Table) {
	cur := &r.dhist[n%wire.DeltaHistory]
	r.dcodec.Set(cur, n, st, tables)
	r.dframes = r.dframes[:0]
	for _, s := range r.seats {
		if s.client == nil || !s.delta {
			continue
		}
		base := r.deltaBase(s, n)
		var b uint64
		if base != nil {
			b = base.N
		} else {
			s.keyAt = n
		}
		var frame []byte
		for _, f := range r.dframes {
			if f.base == b {
				frame = f.frame
				break
			}
		}
		if frame == nil {
			frame = r.denc.Frame(base, cur)
			r.dframes = append(r.dframes, deltaFrame{base: b, frame: frame})
		}
		s.client.SendState(frame, r.enc.Ack(s.ack))
	}
	for i := range r.dframes {
		r.dframes[i].frame = nil // the clients own the bytes now
	}
}

// deltaBase returns the baseline of s's next delta frame, or nil when it
// gets a keyframe: it has acknowledged nothing, its ack is no longer in the
// history, or its periodic keyframe is due.
func (r *Room) deltaBase(s *Seat, n uint64) *wire.DeltaState {
	s.mu.Lock()
	ack := s.snapAck
	s.mu.Unlock()
	every := uint64(DeltaKeyframeEvery.Seconds() * float64(r.cfg.Hz))
	if ack == 0 || ack >= n || n-ack >= wire.DeltaHistory || n-s.keyAt >= every {
		return nil
	}
	if b := &r.dhist[ack%wire.DeltaHistory]; b.N == ack {
		return b
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("room: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
