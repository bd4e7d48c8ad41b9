package wire

import "testing"

func TestWebSocketURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":          "ws://127.0.0.1:8080/ws/play",
		"https://example.org/":           "wss://example.org/ws/play",
		"ws://h:1/ws/play":               "ws://h:1/ws/play",
		"wss://h/custom?token=x":         "wss://h/custom?token=x",
		"http://127.0.0.1:8080?token=ab": "ws://127.0.0.1:8080/ws/play?token=ab",
	} {
		if got, err := WebSocketURL(in, PathPlay); err != nil || got != want {
			t.Errorf("WebSocketURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://h", "http://"} {
		if _, err := WebSocketURL(bad, PathPlay); err == nil {
			t.Errorf("WebSocketURL(%q) accepted", bad)
		}
	}
}
