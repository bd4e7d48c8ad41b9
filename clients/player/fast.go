package player

import (
	"encoding/binary"
	"errors"
	"math"
)

// This file is the cheap side of the client for load generators: reading
// the head of a server frame without decoding it into a message, and
// encoding inputs without reflection. A bot that only needs each frame's
// type, tick and server time spends a fraction of DecodeServer's time and
// allocates nothing.

// FrameHead is what Head reads from a server frame.
type FrameHead struct {
	T  string // message type; shares no memory with the frame for known types
	N  uint64 // snapshot tick (`n`), 0 when absent
	ST int64  // server time in Unix ms (`st`), 0 when absent
	// Text is the `text` field of a chat line (a sub-slice of the frame).
	Text []byte
}

// errFrame is a frame Head cannot read.
var errFrame = errors.New("player: malformed frame")

// Head reads the `t`, `n`, `st` and `text` fields of a server frame (one
// msgpack map), skipping every other value. It stops once `t`, `n` and
// `st` of a snap are known, so the players and orbs of a snapshot are not
// read at all when those keys come first (as Tickwire sends them).
func Head(frame []byte) (FrameHead, error) {
	var h FrameHead
	r := mpReader{b: frame}
	n, ok := r.mapLen()
	if !ok {
		return h, errFrame
	}
	var seen uint8
	for i := 0; i < n; i++ {
		key, ok := r.str()
		if !ok {
			return h, errFrame
		}
		switch string(key) {
		case "t":
			t, ok := r.str()
			if !ok {
				return h, errFrame
			}
			h.T = internType(t)
			seen |= 1
		case "n":
			v, ok := r.num()
			if !ok {
				return h, errFrame
			}
			h.N = uint64(v)
			seen |= 2
		case "st":
			v, ok := r.num()
			if !ok {
				return h, errFrame
			}
			h.ST = int64(v)
			seen |= 4
		case "text":
			t, ok := r.str()
			if !ok {
				return h, errFrame
			}
			h.Text = t
		default:
			if !r.skip() {
				return h, errFrame
			}
		}
		if seen == 7 && h.T == "snap" {
			return h, nil
		}
	}
	if seen&1 == 0 {
		return h, errFrame
	}
	return h, nil
}

var knownTypes = []string{"snap", "welcome", "pong", "joined", "left", "chat", "typing", "error"}

// internType returns a known type name without allocating.
func internType(t []byte) string {
	for _, k := range knownTypes {
		if string(t) == k {
			return k
		}
	}
	return string(t)
}

// AppendInput appends an `input` frame to dst, as Input would send it:
// seq, then one field per name with the value at the same index (names past
// the values are left out and count as 0), and, when ack is not 0, `n`
// acknowledging the delta snapshot of that tick (an addition of delta
// mode).
func AppendInput(dst []byte, seq, ack uint64, names []string, values []float64) []byte {
	fields := min(len(names), len(values))
	keys := 2 + fields
	if ack != 0 {
		keys++
	}
	dst = append(dst, 0x80|byte(keys), 0xa1, 't', 0xa5, 'i', 'n', 'p', 'u', 't', 0xa3, 's', 'e', 'q', 0xcf)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	for i := range fields {
		dst = append(dst, 0xa0|byte(len(names[i]))) // names are at most 16 bytes
		dst = append(dst, names[i]...)
		dst = append(dst, 0xcb)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(values[i]))
	}
	if ack != 0 {
		dst = append(dst, 0xa1, 'n', 0xcf)
		dst = binary.BigEndian.AppendUint64(dst, ack)
	}
	return dst
}

// AppendChat appends a `chat` frame with text to dst.
func AppendChat(dst []byte, text string) []byte {
	dst = append(dst, 0x82, 0xa1, 't', 0xa4, 'c', 'h', 'a', 't', 0xa4, 't', 'e', 'x', 't')
	return appendStr(dst, text)
}

func appendStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n < 256:
		dst = append(dst, 0xd9, byte(n))
	case n < 1<<16:
		dst = append(dst, 0xda)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0xdb)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	}
	return append(dst, s...)
}

// mpReader reads msgpack values from a byte slice.
type mpReader struct {
	b []byte
	i int
}

// take returns the next n bytes.
func (r *mpReader) take(n int) ([]byte, bool) {
	if n < 0 || len(r.b)-r.i < n {
		return nil, false
	}
	p := r.b[r.i : r.i+n]
	r.i += n
	return p, true
}

func (r *mpReader) byte() (byte, bool) {
	p, ok := r.take(1)
	if !ok {
		return 0, false
	}
	return p[0], true
}

// uintN reads a big-endian unsigned integer of n bytes.
func (r *mpReader) uintN(n int) (uint64, bool) {
	p, ok := r.take(n)
	if !ok {
		return 0, false
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, true
}

func (r *mpReader) mapLen() (int, bool) {
	c, ok := r.byte()
	switch {
	case !ok:
		return 0, false
	case c&0xf0 == 0x80:
		return int(c & 0x0f), true
	case c == 0xde:
		v, ok := r.uintN(2)
		return int(v), ok
	case c == 0xdf:
		v, ok := r.uintN(4)
		return int(v), ok
	}
	return 0, false
}

func (r *mpReader) str() ([]byte, bool) {
	c, ok := r.byte()
	if !ok {
		return nil, false
	}
	var n uint64
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, ok = r.uintN(1)
	case c == 0xda:
		n, ok = r.uintN(2)
	case c == 0xdb:
		n, ok = r.uintN(4)
	default:
		return nil, false
	}
	if !ok {
		return nil, false
	}
	return r.take(int(n))
}

// num reads an integer or a float as a float64.
func (r *mpReader) num() (float64, bool) {
	c, ok := r.byte()
	if !ok {
		return 0, false
	}
	switch {
	case c <= 0x7f:
		return float64(c), true
	case c >= 0xe0:
		return float64(int8(c)), true
	case c >= 0xcc && c <= 0xcf: // uint 8-64
		v, ok := r.uintN(1 << (c - 0xcc))
		return float64(v), ok
	case c >= 0xd0 && c <= 0xd3: // int 8-64
		n := 1 << (c - 0xd0)
		v, ok := r.uintN(n)
		shift := 64 - 8*n
		return float64(int64(v<<shift) >> shift), ok
	case c == 0xca:
		v, ok := r.uintN(4)
		return float64(math.Float32frombits(uint32(v))), ok
	case c == 0xcb:
		v, ok := r.uintN(8)
		return math.Float64frombits(v), ok
	}
	return 0, false
}

// skip passes over one value of any type.
func (r *mpReader) skip() bool {
	c, ok := r.byte()
	if !ok {
		return false
	}
	var n uint64 // bytes to pass over
	items := 0   // or values to skip
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c&0xf0 == 0x90:
		items = int(c & 0x0f)
	case c&0xf0 == 0x80:
		items = 2 * int(c&0x0f)
	case c == 0xc4 || c == 0xd9:
		n, ok = r.uintN(1)
	case c == 0xc5 || c == 0xda:
		n, ok = r.uintN(2)
	case c == 0xc6 || c == 0xdb:
		n, ok = r.uintN(4)
	case c == 0xca:
		n = 4
	case c == 0xcb:
		n = 8
	case c >= 0xcc && c <= 0xcf:
		n = 1 << (c - 0xcc)
	case c >= 0xd0 && c <= 0xd3:
		n = 1 << (c - 0xd0)
	case c == 0xdc:
		var v uint64
		v, ok = r.uintN(2)
		items = int(v)
	case c == 0xdd:
		var v uint64
		v, ok = r.uintN(4)
		items = int(v)
	case c == 0xde:
		var v uint64
		v, ok = r.uintN(2)
		items = 2 * int(v)
	case c == 0xdf:
		var v uint64
		v, ok = r.uintN(4)
		items = 2 * int(v)
	case c >= 0xd4 && c <= 0xd8: // fixext 1-16
		n = 1 + 1<<(c-0xd4)
	case c == 0xc7:
		n, ok = r.uintN(1)
		n++
	case c == 0xc8:
		n, ok = r.uintN(2)
		n++
	case c == 0xc9:
		n, ok = r.uintN(4)
		n++
	default:
		return false
	}
	if !ok {
		return false
	}
	if n > 0 {
		if _, ok := r.take(int(n)); !ok {
			return false
		}
	}
	for ; items > 0; items-- {
		if !r.skip() {
			return false
		}
	}
	return true
}
