package wire

import (
	"strconv"
)

// Spectator event types (the `event:` of SSE, the `type` of long-poll).
const (
	EventRoom   = "room"
	EventSnap   = "snap"
	EventJoined = "joined"
	EventLeft   = "left"
	EventChat   = "chat"
	EventClosed = "closed"
)

// SpectatorRoom is the data of a `room` event: the full room info a viewer
// starts from.
type SpectatorRoom struct {
	ID      string       `json:"id"`
	Hz      int          `json:"hz"`
	W       float64      `json:"w"`
	H       float64      `json:"h"`
	Players []PlayerInfo `json:"players"`
}

// SpectatorClosed is the data of a `closed` event.
type SpectatorClosed struct {
	Reason string `json:"reason"`
}

// SpectatorSnap is the data of a `snap` event as a viewer decodes it; the
// server writes it with AppendSnapJSON.
type SpectatorSnap struct {
	N  uint64       `json:"n"`
	ST int64        `json:"st"`
	P  [][7]float64 `json:"p"` // [id,x,y,vx,vy,score,rtt]
	O  [][3]float64 `json:"o"` // [id,x,y]
}

// AppendSnapJSON appends the JSON data of a spectator `snap` event:
// {"n","st","p":[[id,x,y,vx,vy,score,rtt],...],"o":[[id,x,y],...]}, with
// coordinates at 32-bit float precision, like the player snapshots.
func AppendSnapJSON(dst []byte, n uint64, st int64, p []PlayerState, o []Orb) []byte {
	dst = append(dst, `{"n":`...)
	dst = strconv.AppendUint(dst, n, 10)
	dst = append(dst, `,"st":`...)
	dst = strconv.AppendInt(dst, st, 10)
	dst = append(dst, `,"p":[`...)
	for i := range p {
		ps := &p[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = strconv.AppendUint(dst, uint64(ps.ID), 10)
		for _, v := range [...]float64{ps.X, ps.Y, ps.VX, ps.VY} {
			dst = append(dst, ',')
			dst = appendFloat32(dst, v)
		}
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, int64(ps.Score), 10)
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, int64(ps.RTT), 10)
		dst = append(dst, ']')
	}
	dst = append(dst, `],"o":[`...)
	for i := range o {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = strconv.AppendUint(dst, uint64(o[i].ID), 10)
		dst = append(dst, ',')
		dst = appendFloat32(dst, o[i].X)
		dst = append(dst, ',')
		dst = appendFloat32(dst, o[i].Y)
		dst = append(dst, ']')
	}
	return append(dst, "]}"...)
}

// appendFloat32 writes v rounded to float32 in its shortest form; values
// JSON cannot hold (NaN, infinities) are written as 0.
func appendFloat32(dst []byte, v float64) []byte {
	f := float32(v)
	if f != f || f > 3.4e38 || f < -3.4e38 {
		return append(dst, '0')
	}
	return strconv.AppendFloat(dst, float64(f), 'f', -1, 32)
}
