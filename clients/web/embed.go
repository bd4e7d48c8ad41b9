// Package web is Tickwire's browser client: a lobby, the game on a canvas
// with client-side prediction, chat, a WebRTC voice call, a read-only
// spectator view (live or delayed) and replays of recorded rooms. It plays any game mode from the schema the server sends:
// arena and shooter with renderers of their own, any other mode with a
// generic one. It is plain HTML, CSS and JavaScript modules embedded in the
// binary; nothing needs to be built.
//
// The files:
//
//   - index.html, app.js, style.css: the demo page.
//   - tickwire.js: the network layer as an ES module (list modes, join a
//     room, send inputs, chat, spectate over SSE or long-poll, join a
//     call), which other games can use on their own.
//   - vendor/msgpack.min.js: @msgpack/msgpack, see vendor/README.md.
//
// Handler serves them; it is safe for concurrent use.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed index.html app.js tickwire.js style.css vendor/msgpack.min.js vendor/LICENSE vendor/README.md
var files embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// served maps URL paths ("/", "/app.js", ...) to files.
var served = func() map[string]*file {
	m := make(map[string]*file)
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &file{body: body, contentType: contentType(name), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		m["/"+name] = f
		if name == "index.html" {
			m["/"] = f
		}
		return nil
	})
	if err != nil {
		panic("web: reading embedded files: " + err.Error())
	}
	return m
}()

func contentType(name string) string {
	switch ext := path.Ext(name); ext {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".md", "":
		return "text/plain; charset=utf-8"
	default:
		if t := mime.TypeByExtension(ext); t != "" {
			return t
		}
		return "application/octet-stream"
	}
}

// Handler serves the browser client: index.html at "/" (the lobby, game,
// call, spectator view and replays, chosen by the query string:
// ?room=auto&name=ana, ?watch=ROOM, ?watch=ROOM&transport=poll,
// ?watch=ROOM&delay=10, ?replay=ROOM) and the files it loads. Any
// other path is 404, so Handler can be mounted at "GET /" next to the API.
// Responses carry an ETag and must be revalidated (Cache-Control: no-cache).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := served[r.URL.Path]
		if !ok || strings.HasSuffix(r.URL.Path, "/index.html") {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}
