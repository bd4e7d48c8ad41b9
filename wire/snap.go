package wire

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"
)

// SnapEncoder encodes snapshots for many receivers at once: the part shared
// by every receiver is encoded once per tick, and each receiver's `ack` is
// a few bytes appended to it. The frame sent to a receiver is
// Shared(...) followed by Ack(ack). The `ack` key is the last of the map so
// that nothing after it depends on the receiver.
//
// A SnapEncoder is not safe for concurrent use; a room owns one.
type SnapEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
	ack bytes.Buffer
	ae  *msgpack.Encoder
}

// NewSnapEncoder returns an encoder with compact integers.
func NewSnapEncoder() *SnapEncoder {
	e := &SnapEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.UseCompactInts(true)
	e.ae = msgpack.NewEncoder(&e.ack)
	e.ae.UseCompactInts(true)
	return e
}

// Shared encodes a snap without its ack value, for any number of
// receivers, each appending its own ack. The result is valid until the next
// call (receivers copy what they keep). Coordinates and velocities are
// encoded as 32-bit floats.
func (e *SnapEncoder) Shared(n uint64, st int64, p []PlayerState, o []Orb) []byte {
	e.buf.Reset()
	enc := e.enc
	// Errors cannot happen when writing to a bytes.Buffer.
	_ = enc.EncodeMapLen(6)
	_ = enc.EncodeString("t")
	_ = enc.EncodeString(TypeSnap)
	_ = enc.EncodeString("n")
	_ = enc.EncodeUint(n)
	_ = enc.EncodeString("st")
	_ = enc.EncodeInt(st)
	_ = enc.EncodeString("p")
	_ = enc.EncodeArrayLen(len(p))
	for i := range p {
		ps := &p[i]
		_ = enc.EncodeArrayLen(7)
		_ = enc.EncodeUint(uint64(ps.ID))
		_ = enc.EncodeFloat32(float32(ps.X))
		_ = enc.EncodeFloat32(float32(ps.Y))
		_ = enc.EncodeFloat32(float32(ps.VX))
		_ = enc.EncodeFloat32(float32(ps.VY))
		_ = enc.EncodeInt(int64(ps.Score))
		_ = enc.EncodeInt(int64(ps.RTT))
	}
	_ = enc.EncodeString("o")
	_ = enc.EncodeArrayLen(len(o))
	for i := range o {
		_ = enc.EncodeArrayLen(3)
		_ = enc.EncodeUint(uint64(o[i].ID))
		_ = enc.EncodeFloat32(float32(o[i].X))
		_ = enc.EncodeFloat32(float32(o[i].Y))
	}
	_ = enc.EncodeString("ack")
	return e.buf.Bytes()
}

// Ack encodes an ack value. The result is valid until the next call.
func (e *SnapEncoder) Ack(ack uint64) []byte {
	e.ack.Reset()
	_ = e.ae.EncodeUint(ack)
	return e.ack.Bytes()
}
