package lobby

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/tickwire/tickwire/game/room"
	"github.com/tickwire/tickwire/wire"
)

// PlayerConn is what a player session needs of its WebSocket.
type PlayerConn interface {
	room.Client
	// Read returns the next frame; it is called from one goroutine.
	Read() ([]byte, error)
	// Reply queues an answer to the player's own message, waiting for
	// room in the queue; it is called from the reading goroutine.
	Reply(msg []byte) error
	// Fail sends msg as the last message, dropping what still waits, and
	// closes with code.
	Fail(msg []byte, code int, reason string)
}

// session is one player connection bound to a seat.
type session struct {
	l     *Lobby
	conn  PlayerConn
	room  *room.Room
	seat  *room.Seat
	opts  PlayerOptions
	chat  *rate.Limiter
	flood *rate.Limiter
	acks  *rate.Limiter // snapshot acks (delta mode), apart from flood
	dec   wire.ClientDecoder
	// pconn is conn as the room sees it (set at join); rtc is the state
	// channel's share of the session, set at the first `rtc-offer`.
	pconn *playerConn
	rtc   *rtcState

	expiry *time.Timer // ends the session when its token expires
}

func (s *session) stopExpiry() {
	if s.expiry != nil {
		s.expiry.Stop()
	}
}

// PlayerOptions tell ServePlayer how to judge a connection.
type PlayerOptions struct {
	// IsTimeout tells a read error caused by missing pongs from others.
	IsTimeout func(error) bool
	// Authorize checks the token of the `join`; nil admits guests. It
	// returns the name the token gives (empty: the join's name is used) and
	// when the session must end (zero: never).
	Authorize func(token string) (name string, expires time.Time, err error)
	// Client is the player's client address (limits.ClientIP of its
	// request), for the per-client limits and log lines.
	Client string
}

// ServePlayer runs a player connection until it ends: it waits for `join`,
// seats the player, then hands inputs, chat and pings over until the
// player leaves or the connection drops. It returns when the connection is
// done with.
func (l *Lobby) ServePlayer(conn PlayerConn, opts PlayerOptions) {
	s := &session{
		l:    l,
		conn: conn,
		opts: opts,
		chat: newLimiter(l.cfg.ChatRate, l.cfg.ChatBurst),
		// Beyond the allowed rate a player may send 9x more for 2 s, i.e.
		// 10x the allowed rate for 2 s, before the flood guard closes.
		flood: newLimiter(l.cfg.MessageRate, int(18*l.cfg.MessageRate)),
		// A delta client acks every snapshot, up to the tick rate: acks
		// have a guard of their own, at twice the tick rate with the same
		// 10x-for-2-s allowance, and leave the message rate to the rest.
		acks: rate.NewLimiter(rate.Limit(2*l.cfg.Hz), 36*l.cfg.Hz),
	}
	defer s.stopExpiry()
	defer s.closeChannel()
	if !s.join() {
		return
	}
	s.dec.SetInputs(s.seat.Inputs())
	reason := wire.LeftDisconnect
	for {
		frame, err := conn.Read()
		if err != nil {
			if opts.IsTimeout != nil && opts.IsTimeout(err) {
				reason = wire.LeftTimeout
			}
			break
		}
		if !s.handle(frame) {
			break
		}
	}
	// Hold the seat unless it was given up already (leave, kick): a
	// connection can also end while the session waits to answer it.
	_ = s.room.Disconnect(context.Background(), s.seat, s.conn, reason)
}

// newLimiter returns a limiter of perSecond with bursts of burst, or one
// that allows everything when either is negative (no limit).
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond < 0 || burst < 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// refuseOverloaded refuses a new seat while the node is past its capacity:
// `overloaded` with the retry hint, close 1013.
func (s *session) refuseOverloaded() {
	s.l.reject(wire.CodeOverloaded)
	retry := s.l.RetryAfter()
	s.conn.Fail(wire.MustEncode(&wire.Error{Code: wire.CodeOverloaded,
		Msg: "the server is at capacity; try again later", Retry: int((retry + time.Second - 1) / time.Second)}),
		wire.CloseTryAgainLater, wire.CodeOverloaded)
}

// fail sends an error and closes with code.
func (s *session) fail(code, msg string, closeCode int) {
	s.conn.Fail(wire.MustEncode(&wire.Error{Code: code, Msg: msg}), closeCode, code)
}

// moved sends the player to the node hosting the room: `error` `moved`
// with that node's URL and the room, then close 4307.
func (s *session) moved(m MovedError) {
	_ = s.conn.Send(wire.MustEncode(&wire.Error{
		Code: wire.CodeMoved, Msg: "room " + m.Room + " is hosted at " + m.URL, URL: m.URL, Room: m.Room,
	}))
	s.conn.Close(wire.CloseMoved, wire.CodeMoved)
}

// join waits for the first message, which must be a valid `join`, and
// seats the player. It reports whether the session goes on.
func (s *session) join() bool {
	timer := time.AfterFunc(s.l.cfg.JoinWait, func() {
		s.fail(wire.CodeUnauthorized, "no join in time", wire.CloseUnauthorized)
	})
	frame, err := s.conn.Read()
	if !timer.Stop() || err != nil {
		return false
	}
	msg, err := wire.DecodeClient(frame)
	if err != nil {
		s.l.reject(wire.CodeBadMessage)
		s.fail(wire.CodeBadMessage, err.Error(), wire.CloseBadMessage)
		return false
	}
	j, ok := msg.(*wire.Join)
	if !ok {
		s.l.reject(wire.CodeBadMessage)
		s.fail(wire.CodeBadMessage, "the first message must be join", wire.CloseBadMessage)
		return false
	}
	// The room sees the connection through this wrapper from now on.
	s.pconn = &playerConn{PlayerConn: s.conn, delta: wire.HasCap(j.Caps, wire.CapDelta)}
	s.conn = s.pconn
	if s.l.draining.Load() {
		s.fail(wire.CodeClosed, "the server is shutting down", wire.CloseGoingAway)
		return false
	}
	if s.opts.Authorize != nil {
		name, expires, err := s.opts.Authorize(j.Token)
		if err != nil {
			s.l.reject(wire.CodeUnauthorized)
			s.fail(wire.CodeUnauthorized, "bad or missing token", wire.CloseUnauthorized)
			return false
		}
		if n := utf8.RuneCountInString(name); n >= 1 && n <= wire.MaxNameLen {
			j.Name = name // the token's name wins over the one typed
		}
		if !expires.IsZero() {
			s.expiry = time.AfterFunc(time.Until(expires), func() {
				s.fail(wire.CodeUnauthorized, "token expired", wire.CloseUnauthorized)
			})
		}
	}
	ctx := context.Background()
	if j.Resume != "" {
		id := room.RoomOfToken(j.Resume)
		r, err := s.l.Room(id)
		if err == nil {
			if seat, err := r.Resume(ctx, s.conn, j.Resume); err == nil {
				s.room, s.seat = r, seat
				return true
			}
		} else if li, ok := s.l.remoteRoom(id); ok && errors.Is(err, ErrNotFound) {
			s.moved(MovedError{Room: li.ID, URL: li.URL}) // resume there
			return false
		}
	}
	// Past here the player takes a new seat: not while the node is past
	// its capacity (those in play resume above).
	if s.l.Overloaded() {
		s.refuseOverloaded()
		return false
	}
	if j.Room == wire.RoomAuto {
		r, seat, err := s.l.Matchmake(ctx, s.conn, j.Name, j.Mode, s.opts.Client)
		var moved *MovedError
		var limited *RateLimitedError
		switch {
		case errors.As(err, &limited):
			s.fail(wire.CodeRateLimited, fmt.Sprintf("too many rooms created from your address; try again in %ds",
				int(math.Ceil(limited.Retry.Seconds()))), wire.CloseRateLimited)
			return false
		case errors.As(err, &moved):
			s.moved(*moved)
			return false
		case errors.Is(err, ErrNoMode):
			s.l.reject(wire.CodeNotFound)
			s.fail(wire.CodeNotFound, err.Error(), wire.CloseNotFound)
			return false
		case errors.Is(err, ErrTooMany):
			s.l.reject(wire.CodeRoomFull)
			s.fail(wire.CodeRoomFull, "no free seat and no room for a new room", wire.CloseRoomFull)
			return false
		case errors.Is(err, ErrOverloaded): // the node became overloaded since the check above
			s.refuseOverloaded()
			return false
		case err != nil:
			s.fail(wire.CodeClosed, "the server is shutting down", wire.CloseGoingAway)
			return false
		}
		s.room, s.seat = r, seat
		return true
	}
	r, err := s.l.Room(j.Room)
	if errors.Is(err, ErrNotFound) {
		if li, ok := s.l.remoteRoom(j.Room); ok {
			s.moved(MovedError{Room: li.ID, URL: li.URL})
			return false
		}
	}
	if err != nil {
		s.l.reject(wire.CodeNotFound)
		s.fail(wire.CodeNotFound, "no room "+j.Room, wire.CloseNotFound)
		return false
	}
	seat, err := r.Join(ctx, s.conn, j.Name)
	switch {
	case errors.Is(err, room.ErrRoomFull):
		s.l.reject(wire.CodeRoomFull)
		s.fail(wire.CodeRoomFull, "room "+j.Room+" is full", wire.CloseRoomFull)
		return false
	case err != nil:
		s.fail(wire.CodeNotFound, "room "+j.Room+" has ended", wire.CloseNotFound)
		return false
	}
	s.room, s.seat = r, seat
	return true
}

// handle acts on one frame from a seated player and reports whether the
// session goes on.
func (s *session) handle(frame []byte) bool {
	ctx := context.Background()
	msg, err := s.dec.Decode(frame) // valid until the next frame
	limit := s.flood
	if _, ok := msg.(*wire.Ack); ok {
		limit = s.acks
	}
	if !limit.Allow() {
		s.kick(wire.CodeRateLimited, "too many messages", wire.CloseRateLimited)
		return false
	}
	if err != nil {
		var fe *wire.FieldError // declared here: errors.As makes it escape
		if errors.As(err, &fe) {
			return s.conn.Reply(wire.MustEncode(&wire.Error{Code: wire.CodeBadMessage, Msg: fe.Error()})) == nil
		}
		s.kick(wire.CodeBadMessage, err.Error(), wire.CloseBadMessage)
		return false
	}
	switch m := msg.(type) {
	case *wire.Input:
		if err := s.seat.Input(m); err != nil {
			return s.conn.Reply(wire.MustEncode(&wire.Error{Code: wire.CodeBadMessage, Msg: err.Error()})) == nil
		}
		if m.N > 0 { // an ack carried by the input (delta mode)
			s.seat.AckSnapshot(s.conn, m.N)
		}
	case *wire.Ack:
		s.seat.AckSnapshot(s.conn, m.N)
	case *wire.Ping:
		return s.conn.Reply(wire.MustEncode(&wire.Pong{TS: m.TS, ST: time.Now().UnixMilli()})) == nil
	case *wire.Chat:
		if !s.chat.Allow() {
			s.l.reject(wire.CodeRateLimited)
			return s.conn.Reply(wire.MustEncode(&wire.Error{Code: wire.CodeRateLimited, Msg: "chat is limited; line dropped"})) == nil
		}
		return s.room.Chat(ctx, s.seat, s.conn, m.Text) == nil
	case *wire.Typing:
		if !s.seat.TypingDue(time.Now()) {
			return true // at most one a second is forwarded; the rest go silently
		}
		return s.room.Typing(ctx, s.seat, s.conn) == nil
	case *wire.Leave:
		_ = s.room.Leave(ctx, s.seat, s.conn, wire.LeftLeave)
		s.conn.Close(wire.CloseNormal, "leave")
		return false
	case *wire.Join:
		return s.conn.Reply(wire.MustEncode(&wire.Error{Code: wire.CodeBadMessage, Msg: "already joined"})) == nil
	case *wire.RTCOffer:
		return s.offer(m.SDP)
	case *wire.RTCICE:
		return s.candidate(m.Candidate)
	}
	return true
}

// kick closes the connection for misbehaving and frees the seat at once.
func (s *session) kick(code, msg string, closeCode int) {
	s.l.reject(code)
	s.fail(code, msg, closeCode)
	_ = s.room.Leave(context.Background(), s.seat, s.conn, wire.LeftKicked)
}
