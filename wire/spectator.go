package wire

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
	// Mode and Schema (additions of protocol 1.1) name the room's game mode
	// and declare its tables, as `welcome` does.
	Mode   string  `json:"mode,omitempty"`
	Schema *Schema `json:"schema,omitempty"`
}

// SpectatorClosed is the data of a `closed` event.
type SpectatorClosed struct {
	Reason string `json:"reason"`
}
