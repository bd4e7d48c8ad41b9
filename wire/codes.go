package wire

// Error codes carried by the player protocol's `error` message.
const (
	CodeBadMessage   = "bad-message"
	CodeUnauthorized = "unauthorized"
	CodeNotFound     = "not-found"
	CodeRoomFull     = "room-full"
	CodeRateLimited  = "rate-limited"
	CodeTooBig       = "too-big"
	// CodeClosed is sent when the room a player is in ends (an addition to
	// the contract's table; it is followed by close 1001).
	CodeClosed = "room-closed"
	// CodeMoved answers a `join` for a room hosted on another node of the
	// same cluster (an addition): the `error` carries that node's URL and
	// the room id, and is followed by close CloseMoved.
	CodeMoved = "moved"
	// CodeOverloaded refuses a join while the node is past its capacity
	// (contract 1.1): the `error` carries `retry`, the seconds to wait,
	// and is followed by close CloseTryAgainLater.
	CodeOverloaded = "overloaded"
	// CodeUnsupported answers a request the server does not offer, such
	// as an `rtc-offer` to a server running without WebRTC (-rtc=false);
	// the message is dropped and the session goes on.
	CodeUnsupported = "unsupported"
)

// WebSocket close codes of the player protocol.
const (
	CloseNormal        = 1000 // after `leave`
	CloseGoingAway     = 1001 // the server is shutting down
	ClosePolicy        = 1008 // slow consumer
	CloseTooBig        = 1009 // a frame over the read limit
	CloseTryAgainLater = 1013 // the node is overloaded (contract 1.1)
	CloseBadMessage    = 4000
	CloseUnauthorized  = 4001
	CloseNotFound      = 4004
	CloseRoomFull      = 4009
	CloseRateLimited   = 4029
	CloseMoved         = 4307 // addition: the room is on another node
)

// Reasons of the `left` message.
const (
	LeftLeave      = "leave"
	LeftDisconnect = "disconnect"
	LeftTimeout    = "timeout"
	LeftKicked     = "kicked"
)

// ReasonSlowConsumer is the close reason sent with ClosePolicy when a client
// cannot keep up with reliable messages.
const ReasonSlowConsumer = "slow consumer"
