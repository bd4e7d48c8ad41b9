package wire

import (
	"encoding/binary"
	"errors"
)

// Errors of a VarintReader.
var (
	errBadVarint = errors.New("bad varint")
	errBadLength = errors.New("length out of range")
)

// VarintReader reads the varints of Tickwire's binary encodings (the `d`
// bytes of a delta, the records of a replay file) from a byte slice. It
// remembers the first failure: from then on every read returns the zero
// value and leaves the unread bytes as they were, and Err reports it, so a
// caller can read a run of fields and check once at the end.
type VarintReader struct {
	b   []byte
	err error
}

// NewVarintReader returns a reader of b.
func NewVarintReader(b []byte) *VarintReader { return &VarintReader{b: b} }

// Uvarint reads an unsigned varint (as binary.AppendUvarint writes it).
func (r *VarintReader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadVarint
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed, zig-zag varint (as binary.AppendVarint writes it).
func (r *VarintReader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBadVarint
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Bytes reads an unsigned varint length and that many bytes, which it
// returns as a slice of the reader's bytes with no room to append.
func (r *VarintReader) Bytes() []byte {
	n := r.Uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errBadLength
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Rest returns the bytes not read yet.
func (r *VarintReader) Rest() []byte { return r.b }

// Err returns the first failure of a read, nil if none.
func (r *VarintReader) Err() error { return r.err }
