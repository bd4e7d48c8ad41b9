package limits

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCapsAndDetach(t *testing.T) {
	var rejected []string
	l := New(3, 2, func(r string) { rejected = append(rejected, r) })
	hold := make(chan func())
	block := make(chan struct{})
	h := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/detach" {
			hold <- Detach(r.Context())
			return
		}
		<-block
	}))
	serve := func(ip, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = ip + ":1234"
		h.ServeHTTP(rec, req)
		return rec
	}
	go serve("10.0.0.1", "/detach")
	release := <-hold
	done := make(chan struct{})
	go func() { serve("10.0.0.1", "/wait"); close(done) }()
	for l.Open() != 2 {
	}
	if rec := serve("10.0.0.1", "/x"); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("third from one IP: %d", rec.Code)
	}
	go serve("10.0.0.2", "/wait")
	for l.Open() != 3 {
	}
	if rec := serve("10.0.0.3", "/x"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("over the total: %d", rec.Code)
	}
	if len(rejected) != 2 || rejected[0] != ReasonPerIP || rejected[1] != ReasonTotal {
		t.Fatalf("rejections %v", rejected)
	}
	// The detached slot is held after its handler returned, until released.
	release()
	release()
	if l.Open() != 2 {
		t.Fatalf("open %d after release", l.Open())
	}
	close(block)
	<-done
	for l.Open() != 0 {
	}
	// Loopback clients are capped by the total only.
	lo := New(0, 1, nil)
	lh := lo.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hold <- Detach(r.Context()) }))
	var releases []func()
	for i := 0; i < 3; i++ {
		go func() {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = "127.0.0.1:999"
			lh.ServeHTTP(httptest.NewRecorder(), req)
		}()
		releases = append(releases, <-hold)
	}
	if lo.Open() != 3 {
		t.Fatalf("loopback: %d open", lo.Open())
	}
	for _, r := range releases {
		r()
	}
}
