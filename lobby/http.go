package lobby

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/tickwire/tickwire/internal/httpapi"
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
	rm, err := l.CreateRoom(opts)
	switch {
	case errors.Is(err, ErrDraining):
		httpapi.WriteError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the server is draining")
		return
	case errors.Is(err, ErrTooMany):
		httpapi.WriteRetryError(w, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "too many rooms open; try again later", 10*time.Second)
		return
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, httpapi.CodeBadRequest, err.Error())
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, Listing{Info: rm.Info(), URL: l.URL()})
}
