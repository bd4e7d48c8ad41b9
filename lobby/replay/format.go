package replay

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/tickwire/tickwire/wire"
)

// magic opens every recording file.
const magic = "TWREPLY1"

// frameHead is the size of a frame's length and checksum.
const frameHead = 8

// maxFrame caps a frame's payload; a longer length is damage.
const maxFrame = 16 << 20

// maxBlock caps a block's records once decompressed.
const maxBlock = 64 << 20

// Frame kinds: the first byte of a frame's payload.
const (
	kindHeader byte = 'H'
	kindBlock  byte = 'B'
)

// Record types, the first byte of each record of a block.
const (
	recKey    byte = 1 // players JSON, then a keyframe
	recTick   byte = 2 // a delta against the previous tick record
	recJoined byte = 3 // live id, then the `joined` data
	recLeft   byte = 4 // live id, then the `left` data
	recChat   byte = 5 // live id, then the `chat` data
	recClosed byte = 6 // end time, then the room's `closed` data
	// recHeader travels only from a Recorder to its writer, which writes
	// it as the header frame.
	recHeader byte = 'H'
)

// Block flags.
const (
	flagKey    = 1 << 0 // the block's first record is a recKey
	flagClosed = 1 << 1 // the block holds the recClosed record
	flagFlate  = 1 << 2 // the records are DEFLATE-compressed
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameCRC is the checksum of a frame: CRC-32C of its length bytes and
// payload.
func frameCRC(lenBytes, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(lenBytes, castagnoli), castagnoli, payload)
}

// appendFrame appends payload as one frame.
func appendFrame(dst, payload []byte) []byte {
	var h [frameHead]byte
	binary.LittleEndian.PutUint32(h[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], frameCRC(h[:4], payload))
	return append(append(dst, h[:]...), payload...)
}

// header is the JSON of the header frame.
type header struct {
	Version int                `json:"version"`
	Room    string             `json:"room"`
	Mode    string             `json:"mode"`
	Hz      int                `json:"hz"`
	Start   int64              `json:"start"` // Unix ms
	Info    wire.SpectatorRoom `json:"info"`
}

// blockHead is what a block says of itself before its records.
type blockHead struct {
	flags     byte
	firstOrd  uint64 // ordinal of the first record; records count from 1
	records   uint64
	ticks     uint64 // recKey and recTick records
	firstTick uint64 // 0 when ticks == 0
	lastTick  uint64
	endMS     int64 // st of the last tick, or the close time
}

func (h *blockHead) appendTo(dst []byte) []byte {
	dst = append(dst, kindBlock, h.flags)
	dst = binary.AppendUvarint(dst, h.firstOrd)
	dst = binary.AppendUvarint(dst, h.records)
	dst = binary.AppendUvarint(dst, h.ticks)
	dst = binary.AppendUvarint(dst, h.firstTick)
	dst = binary.AppendUvarint(dst, h.lastTick)
	return binary.AppendVarint(dst, h.endMS)
}

var errDamaged = errors.New("replay: damaged recording")

// parseBlockHead reads a block frame's head and returns its body (the
// records, compressed or not).
func parseBlockHead(p []byte) (blockHead, []byte, error) {
	var h blockHead
	if len(p) < 2 || p[0] != kindBlock {
		return h, nil, errDamaged
	}
	h.flags = p[1]
	r := wire.NewVarintReader(p[2:])
	h.firstOrd, h.records, h.ticks = r.Uvarint(), r.Uvarint(), r.Uvarint()
	h.firstTick, h.lastTick, h.endMS = r.Uvarint(), r.Uvarint(), r.Varint()
	if r.Err() != nil || h.firstOrd == 0 || h.records == 0 || h.ticks > h.records || h.firstTick > h.lastTick {
		return h, nil, errDamaged
	}
	return h, r.Rest(), nil
}

// appendRecord appends one record: its type, the length of its payload,
// the payload.
func appendRecord(dst []byte, typ byte, payload []byte) []byte {
	dst = append(dst, typ)
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	return append(dst, payload...)
}

// nextRecord splits the first record off b.
func nextRecord(b []byte) (typ byte, payload, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errDamaged
	}
	r := wire.NewVarintReader(b[1:])
	payload = r.Bytes()
	if r.Err() != nil {
		return 0, nil, nil, errDamaged
	}
	return b[0], payload, r.Rest(), nil
}

// tickHead reads the tick, the baseline's age and st (relative to the
// baseline's) at the start of a delta (see wire.DeltaCodec.Append).
func tickHead(d []byte) (n, age uint64, dst int64, ok bool) {
	r := wire.NewVarintReader(d)
	n, age, dst = r.Uvarint(), r.Uvarint(), r.Varint()
	return n, age, dst, r.Err() == nil && n > 0 && age < n
}

// inflate decompresses a block's records into dst, within maxBlock.
func inflate(dst, body []byte) ([]byte, error) {
	fr := flate.NewReader(bytes.NewReader(body))
	defer fr.Close()
	buf := bytes.NewBuffer(dst[:0])
	n, err := buf.ReadFrom(io.LimitReader(fr, maxBlock+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	if n > maxBlock {
		return nil, errDamaged
	}
	return buf.Bytes(), nil
}

// frameRef is where a good frame lies in a file.
type frameRef struct {
	off  int64 // of its head
	size int64 // head and payload
}

// scanFrames reads the frames of a recording from off (just past the
// magic, or past the last frame read before) to size, and hands each good
// one to fn, which may keep the payload only until it returns. It stops at
// the first frame that is incomplete (torn), too long or fails its
// checksum, or that fn refuses, and returns the offset just past the last
// good frame and whether it stopped before size.
func scanFrames(r io.ReaderAt, off, size int64, fn func(ref frameRef, payload []byte) error) (end int64, damaged bool) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, size-off), 64<<10)
	var head [frameHead]byte
	var buf []byte
	for off < size {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return off, true
		}
		n := binary.LittleEndian.Uint32(head[:4])
		if n == 0 || n > maxFrame || int64(n) > size-off-frameHead {
			return off, true
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return off, true
		}
		if frameCRC(head[:4], buf) != binary.LittleEndian.Uint32(head[4:]) {
			return off, true
		}
		ref := frameRef{off: off, size: frameHead + int64(n)}
		if fn(ref, buf) != nil {
			return off, true
		}
		off += ref.size
	}
	return off, false
}

// readFrame reads and checks the frame at ref into buf, which it returns
// (grown when needed), the payload after its first frameHead bytes.
func readFrame(r io.ReaderAt, ref frameRef, buf []byte) ([]byte, error) {
	if ref.size < frameHead || ref.size > frameHead+maxFrame {
		return nil, errDamaged
	}
	if int64(cap(buf)) < ref.size {
		buf = make([]byte, ref.size)
	}
	buf = buf[:ref.size]
	if _, err := r.ReadAt(buf, ref.off); err != nil {
		return nil, fmt.Errorf("%w: %v", errDamaged, err)
	}
	if int64(binary.LittleEndian.Uint32(buf[:4])) != ref.size-frameHead ||
		frameCRC(buf[:4], buf[frameHead:]) != binary.LittleEndian.Uint32(buf[4:8]) {
		return nil, errDamaged
	}
	return buf, nil
}

// parseHeader reads a header frame's payload.
func parseHeader(p []byte) (header, error) {
	var h header
	if len(p) < 1 || p[0] != kindHeader {
		return h, errDamaged
	}
	if err := json.Unmarshal(p[1:], &h); err != nil || h.Version != 1 || h.Room == "" || h.Hz <= 0 {
		return h, errDamaged
	}
	return h, nil
}
