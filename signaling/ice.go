package signaling

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/tickwire/tickwire/internal/httpapi"
	"github.com/tickwire/tickwire/wire"
)

// TURNCredentials returns ephemeral TURN credentials in the TURN REST API
// form that coturn's use-auth-secret accepts: username "<unix expiry>:<id>"
// and credential base64(HMAC-SHA1(secret, username)).
func TURNCredentials(secret, id string, expiry time.Time) (username, credential string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + id
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// iceServers lists the configured STUN and TURN servers, the TURN entry with
// credentials for id valid until now+TURNTTL. The list is empty, not nil,
// when none are configured.
func (s *Server) iceServers(id string, now time.Time) []wire.SignalICEServer {
	out := []wire.SignalICEServer{}
	if len(s.cfg.STUN) > 0 {
		out = append(out, wire.SignalICEServer{URLs: s.cfg.STUN})
	}
	if len(s.cfg.TURN) > 0 {
		turn := wire.SignalICEServer{URLs: s.cfg.TURN}
		if s.cfg.TURNSecret != "" {
			turn.Username, turn.Credential = TURNCredentials(s.cfg.TURNSecret, id, now.Add(s.cfg.TURNTTL))
		}
		out = append(out, turn)
	}
	return out
}

// ICEHandler answers GET /api/ice with {"iceServers":[...],"ttl":seconds}.
// TURN credentials name the user id from Config.Authenticate, or a random
// id for guests.
func (s *Server) ICEHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, httpapi.CodeBadRequest, "use GET")
			return
		}
		user := ""
		if s.cfg.Authenticate != nil {
			var err error
			if user, _, err = s.cfg.Authenticate(r, ""); err != nil {
				httpapi.WriteError(w, http.StatusUnauthorized, httpapi.CodeUnauthorized, "bad or missing token")
				return
			}
		}
		if user == "" {
			user = newID()
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.WriteJSON(w, http.StatusOK, wire.SignalICEResponse{
			ICEServers: s.iceServers(user, time.Now()),
			TTL:        int64(s.cfg.TURNTTL / time.Second),
		})
	})
}
