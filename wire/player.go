package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Message types of the player WebSocket (the `t` key).
const (
	TypeJoin    = "join"
	TypeInput   = "input"
	TypePing    = "ping"
	TypeChat    = "chat"
	TypeTyping  = "typing"
	TypeLeave   = "leave"
	TypeWelcome = "welcome"
	TypeSnap    = "snap"
	TypePong    = "pong"
	TypeJoined  = "joined"
	TypeLeft    = "left"
	TypeError   = "error"
)

// Limits of client message fields.
const (
	MaxNameLen = 24  // characters of a player name
	MaxChatLen = 280 // characters of a chat line
	MaxIDLen   = 64  // characters of a room or call id
	MaxSeq     = 1<<53 - 1
)

// RoomAuto asks the server to pick the fullest public room with a free seat.
const RoomAuto = "auto"

// ErrMalformed means a frame is not one msgpack map with a known `t`; the
// server closes such a connection with CloseBadMessage.
var ErrMalformed = errors.New("wire: malformed frame")

// FieldError is a known message with a field of the wrong type or range. The
// server answers it with an `error` and drops the message.
type FieldError struct {
	Type  string // message type
	Field string
	Why   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s.%s: %s", e.Type, e.Field, e.Why)
}

// Message is any message of the player protocol. Its Type is the `t` key.
type Message interface {
	Type() string
	setType(string)
}

// ClientMessage is a message from a player: one of *Join, *Input, *Ping,
// *Chat, *Typing, *Leave, *Ack (delta mode, see delta.go), *RTCOffer or
// *RTCICE (state over WebRTC, see rtc.go).
type ClientMessage interface {
	Message
	fromClient()
}

// Head carries the `t` key; every message embeds it and Encode fills it.
type Head struct {
	T string `msgpack:"t" json:"-"`
}

func (h *Head) setType(t string) { h.T = t }

// Join enters a room. Room is RoomAuto or a room id. Caps (an addition)
// lists optional features the client supports, such as CapDelta; unknown
// ones are ignored.
type Join struct {
	Head
	Name   string   `msgpack:"name"`
	Room   string   `msgpack:"room"`
	Token  string   `msgpack:"token,omitempty"`
	Resume string   `msgpack:"resume,omitempty"`
	Caps   []string `msgpack:"caps,omitempty"`
	// Mode (protocol 1.1) picks the game mode of the room `auto` finds or
	// makes; empty means arena.
	Mode string `msgpack:"mode,omitempty"`
}

// Input is the player's intent: the mode's input fields (protocol 1.1;
// arena's are dx and dy), each a number in [-1, 1]. Seq increases with
// every input.
type Input struct {
	Head
	Seq uint64
	// N, in delta mode, acknowledges the snapshot of tick N as an `ack`
	// would (an addition: one message per tick instead of two); 0: none.
	N      uint64
	Fields InputFields
}

// InputField is one field of an input.
type InputField struct {
	Name  string
	Value float64
}

// InputFields are the fields of an input, at most MaxInputFields, in the
// order set or received. The zero value is empty; it allocates nothing.
type InputFields struct {
	n int
	f [MaxInputFields]InputField
}

// Set sets a field, replacing one of the same name. It reports false when
// the input already holds MaxInputFields other fields.
func (in *InputFields) Set(name string, v float64) bool {
	for i := range in.n {
		if in.f[i].Name == name {
			in.f[i].Value = v
			return true
		}
	}
	if in.n == MaxInputFields {
		return false
	}
	in.f[in.n] = InputField{Name: name, Value: v}
	in.n++
	return true
}

// Get returns the value of a field and whether it is present.
func (in *InputFields) Get(name string) (float64, bool) {
	for i := range in.n {
		if in.f[i].Name == name {
			return in.f[i].Value, true
		}
	}
	return 0, false
}

// All returns the fields; the slice aliases the input.
func (in *InputFields) All() []InputField { return in.f[:in.n] }

// NewInput returns an input with the given seq and fields, given as the
// mode's input names and their values in the same order; extra values are
// dropped.
func NewInput(seq uint64, names []string, values ...float64) *Input {
	m := &Input{Seq: seq}
	for i, v := range values {
		if i < len(names) {
			m.Fields.Set(names[i], v)
		}
	}
	return m
}

// EncodeMsgpack writes t, seq, the fields, and n when set.
func (m *Input) EncodeMsgpack(enc *msgpack.Encoder) error {
	keys := 2 + m.Fields.n
	if m.N != 0 {
		keys++
	}
	_ = enc.EncodeMapLen(keys)
	_ = enc.EncodeString("t")
	_ = enc.EncodeString(TypeInput)
	_ = enc.EncodeString("seq")
	_ = enc.EncodeUint(m.Seq)
	for _, f := range m.Fields.All() {
		_ = enc.EncodeString(f.Name)
		_ = enc.EncodeFloat64(f.Value)
	}
	if m.N != 0 {
		_ = enc.EncodeString("n")
		_ = enc.EncodeUint(m.N)
	}
	return nil
}

// Ping asks for a `pong` echoing TS.
type Ping struct {
	Head
	TS float64 `msgpack:"ts"`
}

// Chat is one chat line of 1..MaxChatLen characters.
type Chat struct {
	Head
	Text string `msgpack:"text"`
}

// Typing signals that the player is typing.
type Typing struct{ Head }

// Leave leaves the room; the server closes with CloseNormal.
type Leave struct{ Head }

// Type returns TypeJoin.
func (*Join) Type() string { return TypeJoin }

// Type returns TypeInput.
func (*Input) Type() string { return TypeInput }

// Type returns TypePing.
func (*Ping) Type() string { return TypePing }

// Type returns TypeChat.
func (*Chat) Type() string { return TypeChat }

// Type returns TypeTyping.
func (*Typing) Type() string { return TypeTyping }

// Type returns TypeLeave.
func (*Leave) Type() string { return TypeLeave }

func (*Join) fromClient()   {}
func (*Input) fromClient()  {}
func (*Ping) fromClient()   {}
func (*Chat) fromClient()   {}
func (*Typing) fromClient() {}
func (*Leave) fromClient()  {}

// ValidID reports whether s is a valid room or call id: 1-64 characters of
// [A-Za-z0-9_-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// clientFields holds every field a client message may carry while decoding.
type clientFields struct {
	t, name, room, token, resume, text, mode string
	seq, ts, n                               float64
	caps                                     []string
	has                                      uint16 // bit per field present
	bad                                      string // first field with a wrong type
	// Keys of no known message: an input's fields, kept in the order
	// read (at most MaxInputFields; more sets tooMany).
	others  [MaxInputFields]otherField
	nothers int
	tooMany bool
	longKey bool // a key longer than any name of the protocol
	// The msgpack values of `sdp` and `candidate` (rtc-offer, rtc-ice),
	// sub-slices of the frame, nil when absent. They are input fields too
	// for a mode that names one so.
	sdp, cand []byte
}

// otherField is a key no message of the protocol knows, with its value
// when it is a number.
type otherField struct {
	key   [MaxNameBytes]byte
	klen  uint8
	value float64
	isNum bool
}

const (
	hasSeq = 1 << iota
	hasTS
	hasName
	hasRoom
	hasText
	hasN
	hasCaps
)

var decoderPool = sync.Pool{New: func() any {
	return &pooledDecoder{dec: msgpack.NewDecoder(nil)}
}}

type pooledDecoder struct {
	frame []byte // the frame being decoded
	r     bytes.Reader
	dec   *msgpack.Decoder
	key   [16]byte // a map key or a short string value, read without allocating
}

// DecodeClient decodes one frame from a player. It returns ErrMalformed
// (wrapped) when the frame is not a msgpack map with a known `t`, and a
// *FieldError when a known message has a field of the wrong type or range.
// Unknown keys are ignored.
func DecodeClient(frame []byte) (ClientMessage, error) { return decodeClient(frame, nil) }

// ClientDecoder decodes a player's frames like DecodeClient, but returns
// the frequent messages (input, ack, ping) in storage of its own, valid
// until its next Decode: a session decodes its inputs without allocating.
// The zero value is ready to use; it is not safe for concurrent use.
type ClientDecoder struct {
	input  Input
	ack    Ack
	ping   Ping
	inputs []string // the mode's input names, returned without allocating
}

// SetInputs tells the decoder the names of the mode's input fields, so
// that an input's field names come back as these strings instead of new
// ones.
func (d *ClientDecoder) SetInputs(names []string) { d.inputs = names }

// Decode decodes one frame from a player; see DecodeClient.
func (d *ClientDecoder) Decode(frame []byte) (ClientMessage, error) { return decodeClient(frame, d) }

// reused returns the decoder's own storage for a message (field picks
// it), or a new message without a decoder.
func reused[T any](d *ClientDecoder, field func(*ClientDecoder) *T) *T {
	if d == nil {
		return new(T)
	}
	return field(d)
}

func decodeClient(frame []byte, reuse *ClientDecoder) (ClientMessage, error) {
	pd := decoderPool.Get().(*pooledDecoder)
	defer decoderPool.Put(pd)
	pd.r.Reset(frame)
	pd.dec.Reset(&pd.r)
	pd.frame = frame
	defer func() { pd.frame = nil }()
	var f clientFields
	if err := f.read(pd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if pd.r.Len() != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrMalformed)
	}
	return f.message(reuse)
}

// shortString reads a msgpack string of at most len(pd.key) bytes into
// pd.key; longer ones are skipped and ok is false.
func (pd *pooledDecoder) shortString() (b []byte, ok bool, err error) {
	n, err := pd.dec.DecodeBytesLen()
	if err != nil || n < 0 {
		return nil, false, err
	}
	if n > len(pd.key) {
		_, err = pd.r.Seek(int64(n), io.SeekCurrent)
		return nil, false, err
	}
	err = pd.dec.ReadFull(pd.key[:n])
	return pd.key[:n], true, err
}

// clientTypes are the known values of `t`, returned without allocating.
var clientTypes = []string{TypeJoin, TypeInput, TypePing, TypeChat, TypeTyping, TypeLeave, TypeAck, TypeRTCOffer, TypeRTCICE}

func (f *clientFields) read(pd *pooledDecoder) error {
	d := pd.dec
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	if n < 0 {
		return errors.New("not a map")
	}
	for i := 0; i < n; i++ {
		code, err := d.PeekCode()
		if err != nil {
			return err
		}
		if !isString(code) {
			if err := d.Skip(); err != nil {
				return err
			}
			if err := d.Skip(); err != nil {
				return err
			}
			continue
		}
		key, known, err := pd.shortString()
		if err != nil {
			return err
		}
		if !known { // longer than any key of the protocol
			key = nil
		}
		switch string(key) {
		case "t":
			err = f.typ(pd)
		case "name":
			err = f.str(d, "name", &f.name, hasName)
		case "room":
			err = f.str(d, "room", &f.room, hasRoom)
		case "token":
			err = f.str(d, "token", &f.token, 0)
		case "resume":
			err = f.str(d, "resume", &f.resume, 0)
		case "text":
			err = f.str(d, "text", &f.text, hasText)
		case "seq":
			err = f.num(d, "seq", &f.seq, hasSeq)
		case "ts":
			err = f.num(d, "ts", &f.ts, hasTS)
		case "n":
			err = f.num(d, "n", &f.n, hasN)
		case "caps":
			err = f.strs(d, "caps")
		case "mode":
			err = f.str(d, "mode", &f.mode, 0)
		default:
			isSDP, isCand := string(key) == "sdp", string(key) == "candidate"
			start := len(pd.frame) - pd.r.Len()
			err = f.other(d, key)
			raw := pd.frame[start : len(pd.frame)-pd.r.Len()]
			switch {
			case isSDP:
				f.sdp = raw
			case isCand:
				f.cand = raw
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func isString(c byte) bool {
	return c >= 0xa0 && c <= 0xbf || c == 0xd9 || c == 0xda || c == 0xdb
}

func isNumber(c byte) bool {
	return c <= 0x7f || c >= 0xe0 || c >= 0xca && c <= 0xd3
}

// typ reads `t`: a known type comes back as its constant, without
// allocating; an unknown one as itself.
func (f *clientFields) typ(pd *pooledDecoder) error {
	c, err := pd.dec.PeekCode()
	if err != nil {
		return err
	}
	if c < 0xa0 || c > 0xa0+byte(len(pd.key)) { // not a short fixstr: nil, long, or not a string
		return f.str(pd.dec, "t", &f.t, 0)
	}
	b, _, err := pd.shortString()
	for _, t := range clientTypes {
		if string(b) == t {
			f.t = t
			return err
		}
	}
	f.t = string(b)
	return err
}

// str reads a string field; nil counts as absent, another type is recorded
// as a field error.
func (f *clientFields) str(d *msgpack.Decoder, key string, dst *string, bit uint16) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	switch {
	case c == 0xc0:
		return d.Skip()
	case isString(c):
		s, err := d.DecodeString()
		*dst = s
		f.has |= bit
		return err
	}
	f.wrongType(key)
	return d.Skip()
}

// num reads a number field, int or float.
func (f *clientFields) num(d *msgpack.Decoder, key string, dst *float64, bit uint16) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if c == 0xc0 {
		return d.Skip()
	}
	if !isNumber(c) {
		f.wrongType(key)
		return d.Skip()
	}
	v, err := d.DecodeFloat64()
	*dst = v
	f.has |= bit
	return err
}

// strs reads the caps field: an array of strings. Elements past MaxCaps+1
// are skipped unread (the message is refused anyway); nil counts as absent.
func (f *clientFields) strs(d *msgpack.Decoder, key string) error {
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if c == 0xc0 {
		return d.Skip()
	}
	if !(c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd) {
		f.wrongType(key)
		return d.Skip()
	}
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	f.has |= hasCaps
	f.caps = f.caps[:0]
	for i := 0; i < n; i++ {
		c, err := d.PeekCode()
		if err != nil {
			return err
		}
		if !isString(c) || len(f.caps) > MaxCaps {
			if !isString(c) {
				f.wrongType(key)
			}
			if err := d.Skip(); err != nil {
				return err
			}
			continue
		}
		s, err := d.DecodeString()
		if err != nil {
			return err
		}
		f.caps = append(f.caps, s)
	}
	return nil
}

// other keeps a key no message knows, for an input's fields; a key longer
// than any field name is skipped and remembered (an input refuses it).
func (f *clientFields) other(d *msgpack.Decoder, key []byte) error {
	if len(key) == 0 {
		f.longKey = true
		return d.Skip()
	}
	if f.nothers == MaxInputFields {
		f.tooMany = true
		return d.Skip()
	}
	o := &f.others[f.nothers]
	f.nothers++
	o.klen = uint8(copy(o.key[:], key))
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	if c == 0xc0 || !isNumber(c) {
		o.isNum = false
		return d.Skip()
	}
	o.value, err = d.DecodeFloat64()
	o.isNum = true
	return err
}

// inputFields fills in the fields of an input from the keys no message
// knows, naming them with the decoder's input names where they match.
func (f *clientFields) inputFields(in *InputFields, names []string) error {
	*in = InputFields{}
	if f.tooMany {
		return &FieldError{Type: TypeInput, Field: "fields", Why: fmt.Sprintf("at most %d input fields", MaxInputFields)}
	}
	if f.longKey {
		return &FieldError{Type: TypeInput, Field: "fields", Why: fmt.Sprintf("input field names are 1-%d bytes", MaxNameBytes)}
	}
	for i := range f.nothers {
		o := &f.others[i]
		key := o.key[:o.klen]
		name := ""
		for _, n := range names {
			if string(key) == n {
				name = n
				break
			}
		}
		if name == "" {
			name = string(key)
		}
		if !o.isNum || !(o.value >= -1 && o.value <= 1) {
			return &FieldError{Type: TypeInput, Field: name, Why: "must be a number in [-1,1]"}
		}
		in.Set(name, o.value)
	}
	return nil
}

func (f *clientFields) wrongType(key string) {
	if f.bad == "" {
		f.bad = key
	}
}

func (f *clientFields) message(reuse *ClientDecoder) (ClientMessage, error) {
	fail := func(field, why string) error { return &FieldError{Type: f.t, Field: field, Why: why} }
	if f.bad == "t" {
		return nil, fmt.Errorf("%w: t is not a string", ErrMalformed)
	}
	var m ClientMessage
	head := Head{T: f.t}
	switch f.t {
	case TypeJoin:
		m = &Join{Head: head, Name: f.name, Room: f.room, Token: f.token, Resume: f.resume, Caps: f.caps, Mode: f.mode}
	case TypeInput:
		in := reused(reuse, func(d *ClientDecoder) *Input { return &d.input })
		in.Head, in.Seq, in.N = head, uint64(f.seq), uint64(f.n)
		var names []string
		if reuse != nil {
			names = reuse.inputs
		}
		if err := f.inputFields(&in.Fields, names); err != nil && f.bad == "" {
			return nil, err
		}
		m = in
	case TypePing:
		p := reused(reuse, func(d *ClientDecoder) *Ping { return &d.ping })
		*p = Ping{Head: head, TS: f.ts}
		m = p
	case TypeChat:
		m = &Chat{Head: head, Text: f.text}
	case TypeTyping:
		return &Typing{head}, nil
	case TypeLeave:
		return &Leave{head}, nil
	case TypeAck:
		a := reused(reuse, func(d *ClientDecoder) *Ack { return &d.ack })
		*a = Ack{Head: head, N: uint64(f.n)}
		m = a
	case TypeRTCOffer:
		if f.bad != "" {
			return nil, fail(f.bad, "wrong type")
		}
		var sdp string
		if len(f.sdp) == 0 || msgpack.Unmarshal(f.sdp, &sdp) != nil || sdp == "" {
			return nil, fail("sdp", "must be a non-empty string (an SDP offer)")
		}
		return &RTCOffer{Head: head, SDP: sdp}, nil
	case TypeRTCICE:
		if f.bad != "" {
			return nil, fail(f.bad, "wrong type")
		}
		if len(f.cand) == 0 {
			return nil, fail("candidate", "must be an RTCIceCandidateInit object or null")
		}
		if f.cand[0] == 0xc0 { // null: the end of the candidates
			return &RTCICE{Head: head}, nil
		}
		c, err := decodeCandidate(f.cand)
		if err != nil {
			return nil, fail("candidate", err.Error())
		}
		return &RTCICE{Head: head, Candidate: c}, nil
	default:
		return nil, fmt.Errorf("%w: unknown type %q", ErrMalformed, f.t)
	}
	if f.bad != "" {
		return nil, fail(f.bad, "wrong type")
	}
	switch m := m.(type) {
	case *Join:
		if n := utf8.RuneCountInString(m.Name); f.has&hasName == 0 || n < 1 || n > MaxNameLen || !utf8.ValidString(m.Name) {
			return nil, fail("name", "must be 1-24 characters")
		}
		if m.Room != RoomAuto && !ValidID(m.Room) {
			return nil, fail("room", `must be "auto" or 1-64 characters of [A-Za-z0-9_-]`)
		}
		if m.Mode != "" && !ValidName(m.Mode) {
			return nil, fail("mode", "must be 1-16 characters of [a-z0-9_]")
		}
		if len(m.Caps) > MaxCaps {
			return nil, fail("caps", "must be at most 16 strings of 1-32 bytes")
		}
		for _, c := range m.Caps {
			if len(c) < 1 || len(c) > MaxCapLen {
				return nil, fail("caps", "must be at most 16 strings of 1-32 bytes")
			}
		}
	case *Input:
		if f.has&hasSeq == 0 || f.seq < 0 || f.seq > MaxSeq || f.seq != math.Trunc(f.seq) {
			return nil, fail("seq", "must be an integer >= 0")
		}
		if f.has&hasN != 0 && (f.n < 0 || f.n > MaxSeq || f.n != math.Trunc(f.n)) {
			return nil, fail("n", "must be an integer >= 0")
		}
	case *Ack:
		if f.has&hasN == 0 || f.n < 0 || f.n > MaxSeq || f.n != math.Trunc(f.n) {
			return nil, fail("n", "must be an integer >= 0")
		}
	case *Ping:
		if f.has&hasTS == 0 || math.IsNaN(f.ts) || math.IsInf(f.ts, 0) {
			return nil, fail("ts", "must be a finite number")
		}
	case *Chat:
		if n := utf8.RuneCountInString(m.Text); f.has&hasText == 0 || n < 1 || n > MaxChatLen || !utf8.ValidString(m.Text) {
			return nil, fail("text", "must be 1-280 characters")
		}
	}
	return m, nil
}
