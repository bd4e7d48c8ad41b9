package lobby

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/tickwire/tickwire/game"
	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/internal/limits"
	"github.com/tickwire/tickwire/wire"
)

// maxBody caps the body of POST /api/rooms.
const maxBody = 4 << 10

// RoomsHandler serves GET /api/rooms (the public rooms) and POST /api/rooms
// (create a room).
func (l *Lobby) RoomsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			w.Header().Set("Cache-Control", "no-store")
			httpapi.WriteJSON(w, http.StatusOK, map[string][]Listing{"rooms": l.List()})
		case http.MethodPost:
			l.createRoom(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, httpapi.CodeBadRequest, "use GET or POST")
		}
	})
}

func (l *Lobby) createRoom(w http.ResponseWriter, r *http.Request) {
	var opts RoomOptions
	if r.ContentLength != 0 {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		if err := dec.Decode(&opts); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, "body: "+err.Error())
			return
		}
	}
	opts.Client = limits.ClientIP(r)
	rm, err := l.CreateRoom(opts)
	var limited *RateLimitedError
	switch {
	case errors.As(err, &limited):
		httpapi.WriteRetryError(w, http.StatusTooManyRequests, httpapi.CodeRateLimited,
			"too many rooms created from your address; try again later", limited.Retry)
		return
	case errors.Is(err, ErrOverloaded):
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeOverloaded, "the server is at capacity; try again later", l.RetryAfter())
		return
	case errors.Is(err, ErrDraining):
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the server is draining")
		return
	case errors.Is(err, ErrTooMany):
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "too many rooms open; try again later", 10*time.Second)
		return
	case errors.Is(err, ErrNoMode):
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, err.Error()+"; GET /api/modes lists them")
		return
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, err.Error())
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, Listing{Info: rm.Info(), URL: l.URL()})
}

// ModeInfo is one game mode as GET /api/modes lists it: its name, title,
// schema (tables, input and the layout delta readers need, flattened into
// the object) and field.
type ModeInfo struct {
	Name   string
	Title  string
	Schema *wire.Schema
	Field  game.Field
}

// MarshalJSON writes {"name","title","tables","input","layout","field"}.
func (m ModeInfo) MarshalJSON() ([]byte, error) {
	schema, err := json.Marshal(m.Schema)
	if err != nil {
		return nil, err
	}
	head, _ := json.Marshal(struct {
		Name  string         `json:"name"`
		Title string         `json:"title"`
		Field map[string]any `json:"field"`
	}{m.Name, m.Title, map[string]any{"w": m.Field.W, "h": m.Field.H, "speed": m.Field.Speed, "r": m.Field.R}})
	// Both are JSON objects: join their members.
	return append(append(head[:len(head)-1], ','), schema[1:]...), nil
}

// ModesHandler serves GET /api/modes: the game modes rooms may run, the
// default first.
func (l *Lobby) ModesHandler() http.Handler {
	var modes []ModeInfo
	for _, s := range l.Modes() {
		modes = append(modes, ModeInfo{Name: s.Name, Title: s.Title, Schema: s.Schema(), Field: s.Field})
	}
	body := map[string][]ModeInfo{"modes": modes}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, httpapi.CodeBadRequest, "use GET")
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, body)
	})
}
