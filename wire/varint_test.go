package wire

import (
	"encoding/binary"
	"testing"
)

func TestVarintReader(t *testing.T) {
	b := binary.AppendUvarint(nil, 300)
	b = binary.AppendVarint(b, -5)
	b = binary.AppendUvarint(b, 2)
	b = append(b, "hi!"...)
	r := NewVarintReader(b)
	if u, z, p := r.Uvarint(), r.Varint(), r.Bytes(); u != 300 || z != -5 || string(p) != "hi" || cap(p) != 2 ||
		string(r.Rest()) != "!" || r.Err() != nil {
		t.Fatalf("%d %d %q %q %v", u, z, p, r.Rest(), r.Err())
	}
	// A length past the end fails, and so does every read after it.
	r = NewVarintReader([]byte{5, 1, 2})
	if p := r.Bytes(); p != nil || r.Err() == nil || r.Uvarint() != 0 || len(r.Rest()) != 2 {
		t.Fatalf("%q %v %q", p, r.Err(), r.Rest())
	}
	r = NewVarintReader([]byte{0x80})
	if r.Varint() != 0 || r.Err() == nil || len(r.Rest()) != 1 {
		t.Fatalf("%v %q", r.Err(), r.Rest())
	}
}
