package wire

import (
	"fmt"
	"net/url"
)

// Paths of the WebSocket endpoints.
const (
	PathPlay   = "/ws/play"
	PathSignal = "/ws/signal"
)

// WebSocketURL turns a server address (http://, https://, ws:// or wss://,
// with or without a path) into the WebSocket URL of path: http becomes ws,
// https wss, and an empty path takes path.
func WebSocketURL(server, path string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("wire: bad server address %q", server)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("wire: server address %q: want http(s):// or ws(s)://", server)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = path
	}
	return u.String(), nil
}
