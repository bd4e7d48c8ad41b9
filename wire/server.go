package wire

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// ServerMessage is a message from the server to a player: one of *Welcome,
// *Snap, *Delta, *Pong, *Joined, *Left, *ChatLine, *TypingFrom, *Error,
// *RTCAnswer, *RTCICE.
type ServerMessage interface {
	Message
	fromServer()
}

// PlayerInfo names a player.
type PlayerInfo struct {
	ID   uint32 `msgpack:"id" json:"id"`
	Name string `msgpack:"name" json:"name"`
}

// Welcome is sent once after a successful join.
type Welcome struct {
	Head
	ID      uint32       `msgpack:"id"`
	Room    string       `msgpack:"room"`
	Hz      int          `msgpack:"hz"`
	W       float64      `msgpack:"w"`
	H       float64      `msgpack:"h"`
	Speed   float64      `msgpack:"speed"` // the mode's player speed, where it has one
	R       float64      `msgpack:"r"`     // the mode's player radius, where it has one
	Resume  string       `msgpack:"resume"`
	ST      int64        `msgpack:"st"`
	Players []PlayerInfo `msgpack:"players"`
	// Mode and Schema (additions of protocol 1.1): the room's game mode and
	// its tables and input fields.
	Mode   string  `msgpack:"mode,omitempty"`
	Schema *Schema `msgpack:"schema,omitempty"`
}

// Pong answers a Ping.
type Pong struct {
	Head
	TS float64 `msgpack:"ts"`
	ST int64   `msgpack:"st"`
}

// Joined announces a player who entered the room.
type Joined struct {
	Head
	ID   uint32 `msgpack:"id" json:"id"`
	Name string `msgpack:"name" json:"name"`
}

// Left announces a player who left; Reason is one of the Left* constants.
type Left struct {
	Head
	ID     uint32 `msgpack:"id" json:"id"`
	Reason string `msgpack:"reason" json:"reason"`
}

// ChatLine is a chat line delivered to everyone in the room.
type ChatLine struct {
	Head
	ID   uint32 `msgpack:"id" json:"id"`
	Name string `msgpack:"name" json:"name"`
	Text string `msgpack:"text" json:"text"`
	ST   int64  `msgpack:"st" json:"st"`
}

// TypingFrom tells the others that player ID is typing.
type TypingFrom struct {
	Head
	ID uint32 `msgpack:"id"`
}

// Error reports a problem; a fatal one is followed by a close. URL and
// Room are set with CodeMoved only: the base URL of the node hosting the
// room (its player WebSocket is URL + PathPlay) and the room to join there.
type Error struct {
	Head
	Code string `msgpack:"code"`
	Msg  string `msgpack:"msg"`
	URL  string `msgpack:"url,omitempty"`
	Room string `msgpack:"room,omitempty"`
	// Retry, with CodeOverloaded (and CodeRateLimited where set), is how
	// many seconds to wait before trying again.
	Retry int `msgpack:"retry,omitempty"`
}

// Type returns TypeWelcome.
func (*Welcome) Type() string { return TypeWelcome }

// Type returns TypeSnap.
func (*Snap) Type() string { return TypeSnap }

// Type returns TypePong.
func (*Pong) Type() string { return TypePong }

// Type returns TypeJoined.
func (*Joined) Type() string { return TypeJoined }

// Type returns TypeLeft.
func (*Left) Type() string { return TypeLeft }

// Type returns TypeChat.
func (*ChatLine) Type() string { return TypeChat }

// Type returns TypeTyping.
func (*TypingFrom) Type() string { return TypeTyping }

// Type returns TypeError.
func (*Error) Type() string { return TypeError }

func (*Welcome) fromServer()    {}
func (*Snap) fromServer()       {}
func (*Pong) fromServer()       {}
func (*Joined) fromServer()     {}
func (*Left) fromServer()       {}
func (*ChatLine) fromServer()   {}
func (*TypingFrom) fromServer() {}
func (*Error) fromServer()      {}

var encoderPool = sync.Pool{New: func() any { return newEncoder() }}

type pooledEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newEncoder() *pooledEncoder {
	pe := &pooledEncoder{}
	pe.enc = msgpack.NewEncoder(&pe.buf)
	pe.enc.UseCompactInts(true)
	return pe
}

// Encode returns m as one msgpack map with its `t` key set. Integers are
// encoded compactly.
func Encode(m Message) ([]byte, error) {
	m.setType(m.Type())
	pe := encoderPool.Get().(*pooledEncoder)
	defer encoderPool.Put(pe)
	pe.buf.Reset()
	if err := pe.enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.Clone(pe.buf.Bytes()), nil
}

// MustEncode is Encode for messages that cannot fail to encode (every type
// of this package); it panics on an error.
func MustEncode(m Message) []byte {
	b, err := Encode(m)
	if err != nil {
		panic(err)
	}
	return b
}

var serverTypes = map[string]func() ServerMessage{
	TypeWelcome:   func() ServerMessage { return new(Welcome) },
	TypeSnap:      func() ServerMessage { return new(Snap) },
	TypePong:      func() ServerMessage { return new(Pong) },
	TypeJoined:    func() ServerMessage { return new(Joined) },
	TypeLeft:      func() ServerMessage { return new(Left) },
	TypeChat:      func() ServerMessage { return new(ChatLine) },
	TypeTyping:    func() ServerMessage { return new(TypingFrom) },
	TypeError:     func() ServerMessage { return new(Error) },
	TypeDelta:     func() ServerMessage { return new(Delta) },
	TypeRTCAnswer: func() ServerMessage { return new(RTCAnswer) },
	TypeRTCICE:    func() ServerMessage { return new(RTCICE) },
}

// ErrUnknownType is returned by DecodeServer for a message type it does not
// know; clients ignore such messages.
var ErrUnknownType = errors.New("wire: unknown message type")

// DecodeServer decodes one frame from the server. Unknown fields are
// ignored; an unknown type gives ErrUnknownType.
func DecodeServer(frame []byte) (ServerMessage, error) {
	t, err := peekType(frame)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	newMsg, ok := serverTypes[t]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, t)
	}
	m := newMsg()
	if err := msgpack.Unmarshal(frame, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	return m, nil
}

// peekType finds the `t` key of a msgpack map.
func peekType(frame []byte) (string, error) {
	pd := decoderPool.Get().(*pooledDecoder)
	defer decoderPool.Put(pd)
	pd.r.Reset(frame)
	pd.dec.Reset(&pd.r)
	d := pd.dec
	n, err := d.DecodeMapLen()
	if err != nil {
		return "", err
	}
	for i := 0; i < n; i++ {
		var key string
		if err := d.Decode(&key); err != nil {
			return "", err
		}
		if key == "t" {
			return d.DecodeString()
		}
		if err := d.Skip(); err != nil {
			return "", err
		}
	}
	return "", errors.New("no t key")
}
