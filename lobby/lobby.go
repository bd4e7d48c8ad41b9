// Package lobby owns Tickwire's rooms registry: it creates rooms of the
// game modes it offers, lists them (GET/POST /api/rooms, GET /api/modes),
// matches players to rooms of the mode they ask for, keeps the ids of
// ended rooms for a while so they answer "gone", and binds each player
// connection to its seat (see ServePlayer) and, with Config.StateChannels,
// to a WebRTC state channel that carries its state frames while usable.
//
// A Lobby is safe for concurrent use.
package lobby

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/internal/bus"
	"github.com/tickwire/tickwire/internal/limits"
	"github.com/tickwire/tickwire/lobby/feed"
	"github.com/tickwire/tickwire/lobby/replay"
)

// Config sets up a lobby. Zero fields take the defaults; for the limits
// (MaxPlayers, ChatRate, ChatBurst, MessageRate, MaxRooms, RoomRate,
// RoomBurst) a negative value lifts the limit.
type Config struct {
	Hz         int           // ticks per second of every room (30)
	MaxPlayers int           // seats of an auto-created room (16)
	Grace      time.Duration // seat held after an unexpected disconnect (15s)
	RoomIdle   time.Duration // an empty room ends after this long (30s)
	JoinWait   time.Duration // time a new connection has to send `join` (5s)
	// Modes are the game modes rooms may run; the first is the default
	// (required).
	Modes *game.Catalog
	// ChatRate and ChatBurst limit chat lines per player (5/s, 20).
	ChatRate  float64
	ChatBurst int
	// MessageRate is the rate of messages per second a well-behaved player
	// stays under (2 * Hz: inputs at the tick rate, plus room for pings and
	// chat). A player sending more than 10x that for 2 s is closed with 4029.
	MessageRate float64
	Feed        feed.Config // every room's spectator feed
	// Replays, when set, records every room not created with
	// RoomOptions.Record false; nil: nothing is recorded.
	Replays *replay.Store
	// OnReject, when set, is told the error code of every refused join or
	// message and of every player sent away (for metrics).
	OnReject func(code string)
	// OnTick is given to every room (see room.Config.OnTick).
	OnTick func(d time.Duration, overrun bool)
	// OnLate is given to every room (see room.Config.OnLate).
	OnLate func(late, period time.Duration, skipped int)
	// Load, when set, tells whether the node is past its capacity: new
	// seats and rooms are then refused (ErrOverloaded); players resuming
	// their seats are not.
	Load Load
	// MaxRooms caps the rooms open at once (1000).
	MaxRooms int
	// RoomRate and RoomBurst limit the rooms each client creates (1/s,
	// bursts of 5), by the client address of RoomOptions.Client and
	// PlayerOptions.Client; loopback clients are exempt.
	RoomRate  float64
	RoomBurst int
	Logger    *slog.Logger
	// Bus, when set, joins this lobby to the room directory of the nodes
	// on it (see DirectorySubject): listings and matchmaking then include
	// the other nodes' rooms, and a join for one of them is answered with
	// MovedError.
	Bus bus.Bus
	// Node is this node's id on the bus (random when empty); URL its
	// public URL, shown with its rooms (see also SetURL).
	Node string
	URL  string
	// DirectoryEvery is how often this node publishes its rooms (1s), and
	// DirectoryTTL how long another node's rooms are kept after its last
	// update (3s).
	DirectoryEvery time.Duration
	DirectoryTTL   time.Duration
	// StateChannels, when set, makes a player's state channel at its
	// first `rtc-offer` (contract 1.1, "State over WebRTC"); nil, or a nil
	// result, answers offers with `error` `unsupported`. The session
	// closes the channel when it ends.
	StateChannels func(StateChannelConfig) StateChannel
}

func (c Config) withDefaults() Config {
	if c.Modes == nil {
		panic("lobby: Config.Modes is required")
	}
	if c.Hz <= 0 {
		c.Hz = 30
	}
	switch {
	case c.MaxPlayers == 0:
		c.MaxPlayers = 16
	case c.MaxPlayers < 0:
		c.MaxPlayers = MaxRoomSeats
	}
	if c.Grace <= 0 {
		c.Grace = 15 * time.Second
	}
	if c.RoomIdle <= 0 {
		c.RoomIdle = 30 * time.Second
	}
	if c.JoinWait <= 0 {
		c.JoinWait = 5 * time.Second
	}
	if c.ChatRate == 0 {
		c.ChatRate = 5
	}
	if c.ChatBurst == 0 {
		c.ChatBurst = 20
	}
	if c.MessageRate == 0 {
		c.MessageRate = float64(2 * c.Hz)
	}
	if c.MaxRooms == 0 {
		c.MaxRooms = 1000
	}
	if c.RoomRate == 0 {
		c.RoomRate = 1
	}
	if c.RoomBurst == 0 {
		c.RoomBurst = 5
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Node == "" {
		c.Node = newNodeID()
	}
	if c.DirectoryEvery <= 0 {
		c.DirectoryEvery = time.Second
	}
	if c.DirectoryTTL <= 0 {
		c.DirectoryTTL = 3 * time.Second
	}
	return c
}

func (l *Lobby) reject(code string) {
	if l.cfg.OnReject != nil {
		l.cfg.OnReject(code)
	}
}

// Errors of the registry.
var (
	ErrNotFound = errors.New("lobby: no such room")
	ErrGone     = errors.New("lobby: room has ended")
	ErrDraining = errors.New("lobby: server is draining")
	ErrBadRoom  = errors.New("lobby: bad room options")
	ErrNoMode   = errors.New("lobby: unknown game mode")
	// ErrOverloaded refuses new rooms and seats while the node is past its
	// capacity (see Config.Load).
	ErrOverloaded = errors.New("lobby: the server is overloaded")
	ErrTooMany    = errors.New("lobby: too many rooms")
	// ErrRateLimited: the client created rooms faster than RoomRate
	// allows; the error is a *RateLimitedError.
	ErrRateLimited = errors.New("lobby: too many rooms created by this client")
)

// RateLimitedError refuses a room to a client over its room rate.
type RateLimitedError struct {
	Retry time.Duration // when the client may create a room again
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%v; try again in %v", ErrRateLimited, e.Retry.Round(time.Millisecond))
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitedError) Unwrap() error { return ErrRateLimited }

// MaxRoomSeats is the largest maxPlayers a created room may have.
const MaxRoomSeats = 64

// RejectRoomRate is the reason given to Config.OnReject for a room refused
// to a client over its room rate.
const RejectRoomRate = "room-rate"

// Lobby is the rooms registry.
type Lobby struct {
	cfg       Config
	roomRate  *limits.Rates   // rooms created per client; nil: no limit
	ctx       context.Context // parent of every room's Run
	cancel    context.CancelFunc
	wg        sync.WaitGroup // room goroutines and the directory loop
	draining  atomic.Bool
	roomsMade atomic.Uint64          // rooms created, for their tick phases
	url       atomic.Pointer[string] // this node's public URL
	dir       *directory             // other nodes' rooms; nil without a bus
	dirPoke   chan struct{}          // asks the directory loop to publish now

	mu    sync.Mutex // guards rooms, feeds and ended
	rooms map[string]*room.Room
	feeds map[string]*feed.Feed // the spectator feed of each room
	ended map[string]time.Time  // id -> when it ended
}

// New returns an empty lobby; with a bus it joins the room directory,
// which fails only when the bus does.
func New(cfg Config) (*Lobby, error) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lobby{
		cfg:     cfg.withDefaults(),
		ctx:     ctx,
		cancel:  cancel,
		dirPoke: make(chan struct{}, 1),
		rooms:   make(map[string]*room.Room),
		feeds:   make(map[string]*feed.Feed),
		ended:   make(map[string]time.Time),
	}
	l.url.Store(&l.cfg.URL)
	l.roomRate = limits.NewRates(l.cfg.RoomRate, l.cfg.RoomBurst) // nil when either is negative
	if l.cfg.Bus != nil {
		if err := l.startDirectory(); err != nil {
			cancel()
			return nil, fmt.Errorf("lobby: room directory: %w", err)
		}
	}
	return l, nil
}

// RoomOptions are what a client may choose when creating a room.
type RoomOptions struct {
	Mode       string `json:"mode,omitempty"` // a mode of Config.Modes; empty: the default
	MaxPlayers int    `json:"maxPlayers,omitempty"`
	Private    bool   `json:"private,omitempty"`
	// Record false asks for a room that is not recorded; nil or true: it
	// is when the lobby records rooms (Config.Replays).
	Record *bool `json:"record,omitempty"`
	// Client is the address of the client asking (limits.ClientIP), for
	// the per-client room rate; empty: not limited. Never read from a
	// request body.
	Client string `json:"-"`
}

// CreateRoom starts a new room with a fresh id. It returns ErrTooMany
// when MaxRooms are open, and a *RateLimitedError when opts.Client has
// created rooms faster than RoomRate allows.
func (l *Lobby) CreateRoom(opts RoomOptions) (*room.Room, error) {
	if l.draining.Load() {
		return nil, ErrDraining
	}
	if l.Overloaded() {
		return nil, ErrOverloaded
	}
	spec, err := l.mode(opts.Mode)
	if err != nil {
		return nil, err
	}
	if opts.MaxPlayers < 0 || opts.MaxPlayers > MaxRoomSeats {
		return nil, errors.Join(ErrBadRoom, errors.New("maxPlayers must be 1-64"))
	}
	if opts.MaxPlayers == 0 {
		opts.MaxPlayers = l.cfg.MaxPlayers
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxRooms > 0 && len(l.rooms) >= l.cfg.MaxRooms {
		return nil, ErrTooMany
	}
	// Only a room that would be made counts against the client's rate.
	if wait := l.roomRate.Take(opts.Client, time.Now()); wait > 0 {
		l.reject(RejectRoomRate)
		l.cfg.Logger.Debug("room refused: over the room rate", "client", opts.Client, "retry", wait)
		return nil, &RateLimitedError{Retry: wait}
	}
	id := newRoomID()
	for l.rooms[id] != nil || !l.ended[id].IsZero() || l.cfg.Replays != nil && l.cfg.Replays.Has(id) {
		id = newRoomID()
	}
	cfg := room.Config{
		ID: id, Mode: spec, Private: opts.Private, Hz: l.cfg.Hz, Phase: l.nextPhase(),
		MaxPlayers: opts.MaxPlayers, Grace: l.cfg.Grace, Idle: l.cfg.RoomIdle,
		OnTick: l.cfg.OnTick, OnLate: l.cfg.OnLate, Logger: l.cfg.Logger,
	}
	var r *room.Room
	f := feed.New(l.cfg.Feed, func(delta int) { r.AddSpectators(delta) })
	cfg.Observer = f
	if l.cfg.Replays != nil && (opts.Record == nil || *opts.Record) {
		// The feed first: the recorder keeps the id it gives each event.
		if rec, err := l.cfg.Replays.Record(id, replay.RecordOptions{LiveID: f.LastID}); err == nil {
			cfg.Observer = room.Observers{f, rec}
		} else {
			l.cfg.Logger.Error("room not recorded", "room", id, "err", err)
		}
	}
	r = room.New(cfg)
	l.rooms[id] = r
	l.feeds[id] = f
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		r.Run(l.ctx)
		l.roomEnded(id)
	}()
	l.cfg.Logger.Info("room created", "room", id, "mode", spec.Name, "private", opts.Private, "maxPlayers", opts.MaxPlayers, "client", opts.Client)
	l.pokeDirectory()
	return r, nil
}

// nextPhase spreads the rooms' ticks over the tick period: the n-th room
// made ticks at fraction n/φ (mod 1) of the period, so any number of rooms,
// however fast they are made, tick at nearly evenly spaced moments.
func (l *Lobby) nextPhase() float64 {
	const invPhi = 0.6180339887498949
	_, f := math.Modf(float64(l.roomsMade.Add(1)) * invPhi)
	return f
}

func (l *Lobby) roomEnded(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.rooms, id)
	delete(l.feeds, id)
	now := time.Now()
	l.ended[id] = now
	for old, at := range l.ended {
		if now.Sub(at) > feed.KeepEnded {
			delete(l.ended, old)
		}
	}
	l.cfg.Logger.Info("room ended", "room", id)
	l.pokeDirectory()
}

// Room returns a running room, ErrGone for one that ended lately, or
// ErrNotFound.
func (l *Lobby) Room(id string) (*room.Room, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rooms[id]; r != nil {
		return r, nil
	}
	if !l.ended[id].IsZero() {
		return nil, ErrGone
	}
	return nil, ErrNotFound
}

// Feed returns a running room's spectator feed, or feed.ErrRoomEnded, or
// feed.ErrUnknownRoom.
func (l *Lobby) Feed(id string) (*feed.Feed, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.feeds[id]; f != nil {
		return f, nil
	}
	if !l.ended[id].IsZero() {
		return nil, feed.ErrRoomEnded
	}
	return nil, feed.ErrUnknownRoom
}

// Stats are totals over every room, private ones included.
type Stats struct {
	Rooms, Players, Spectators int
}

// Stats returns the lobby's totals.
func (l *Lobby) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Stats{Rooms: len(l.rooms)}
	for _, r := range l.rooms {
		info := r.Info()
		st.Players += info.Players
		st.Spectators += info.Spectators
	}
	return st
}

// List returns the public rooms of every node, fullest first.
func (l *Lobby) List() []Listing {
	url := l.URL()
	infos := l.infos(true)
	ls := make([]Listing, 0, len(infos))
	for _, info := range infos {
		ls = append(ls, Listing{Info: info, URL: url})
	}
	if l.dir != nil {
		local := make(map[string]bool, len(infos))
		for _, info := range infos {
			local[info.ID] = true
		}
		for _, li := range l.dir.public(time.Now()) {
			if !local[li.ID] { // an id taken on two nodes: this node's room
				ls = append(ls, li)
			}
		}
	}
	sortListings(ls)
	return ls
}

// infos returns the info of this node's rooms, public ones only or all.
func (l *Lobby) infos(publicOnly bool) []room.Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	infos := make([]room.Info, 0, len(l.rooms))
	for _, r := range l.rooms {
		if !publicOnly || !r.Private() {
			infos = append(infos, r.Info())
		}
	}
	return infos
}

// mode returns the named mode, the default for "", or ErrNoMode.
func (l *Lobby) mode(name string) (*game.Spec, error) {
	if name == "" {
		return l.cfg.Modes.Default(), nil
	}
	if spec := l.cfg.Modes.Get(name); spec != nil {
		return spec, nil
	}
	return nil, fmt.Errorf("%w %q", ErrNoMode, name)
}

// Modes returns the game modes this lobby offers, the default first.
func (l *Lobby) Modes() []*game.Spec { return l.cfg.Modes.All() }

// fullestOpen returns the public room of the mode with the most players
// that still has a free seat, skipping those in tried, or nil.
func (l *Lobby) fullestOpen(mode string, tried []*room.Room) *room.Room {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best *room.Room
	bestPlayers := -1
	for _, r := range l.rooms {
		if r.Private() || r.FreeSeats() <= 0 || r.Mode() != mode || slices.Contains(tried, r) {
			continue
		}
		if p := r.Info().Players; p > bestPlayers || p == bestPlayers && r.ID() < best.ID() {
			best, bestPlayers = r, p
		}
	}
	return best
}

// Matchmake seats c in the fullest public room of the mode (empty: the
// default) with a free seat, or in a new room of that mode when there is
// none, which counts against the room rate of client (the player's
// address; empty: not limited). Rooms of other nodes count: when one of
// them has more players than the best of this node, Matchmake returns a
// *MovedError naming it. An unknown mode gives ErrNoMode; a room the client
// may not create yet, a *RateLimitedError.
func (l *Lobby) Matchmake(ctx context.Context, c room.Client, name, mode, client string) (*room.Room, *room.Seat, error) {
	spec, err := l.mode(mode)
	if err != nil {
		return nil, nil, err
	}
	var tried []*room.Room
	for {
		r := l.fullestOpen(spec.Name, tried)
		if l.dir != nil {
			var ids []string
			for _, t := range tried {
				ids = append(ids, t.ID())
			}
			if li, ok := l.dir.fullestOpen(spec.Name, ids, time.Now()); ok && (r == nil || li.Players > r.Info().Players) {
				return nil, nil, &MovedError{Room: li.ID, URL: li.URL}
			}
		}
		if r == nil {
			var err error
			if r, err = l.CreateRoom(RoomOptions{Mode: spec.Name, Client: client}); err != nil {
				return nil, nil, err
			}
		}
		seat, err := r.Join(ctx, c, name)
		switch {
		case err == nil:
			return r, seat, nil
		case errors.Is(err, room.ErrRoomFull), errors.Is(err, room.ErrRoomClosed):
			tried = append(tried, r) // taken meanwhile: look again
		default:
			return nil, nil, err
		}
	}
}

// Drain refuses new rooms and joins from now on, and takes this node's
// rooms out of the directory.
func (l *Lobby) Drain() {
	l.draining.Store(true)
	l.pokeDirectory()
}

// Shutdown ends every room (players get close 1001) and waits for the
// rooms to finish or ctx to end. It is safe to call twice.
func (l *Lobby) Shutdown(ctx context.Context) error {
	l.Drain()
	l.cancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newRoomID returns a random 8-character room id.
func newRoomID() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Load tells whether the node is past its capacity, and how long a
// client refused for it should wait before trying again.
type Load interface {
	Overloaded() bool
	RetryAfter() time.Duration
}

// Overloaded reports whether new seats and rooms are refused for load.
func (l *Lobby) Overloaded() bool { return l.cfg.Load != nil && l.cfg.Load.Overloaded() }

// RetryAfter is the wait suggested to a client refused for load.
func (l *Lobby) RetryAfter() time.Duration {
	if l.cfg.Load == nil {
		return 0
	}
	return l.cfg.Load.RetryAfter()
}
