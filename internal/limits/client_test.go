package limits

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestParseProxies(t *testing.T) {
	p, err := ParseProxies([]string{" 10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "::ffff:192.168.0.0/112", ""})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "11.0.0.1": false, "127.0.0.1": true, "127.0.0.2": false,
		"::1": true, "fd12::5": true, "2001:db8::1": false,
		"192.168.3.4": true, "::ffff:10.0.0.1": true, "fe80::1%eth0": false,
	} {
		if got := p.Trusted(mustAddr(t, addr)); got != want {
			t.Errorf("Trusted(%s) = %v", addr, got)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "localhost", "1.2.3"} {
		if _, err := ParseProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if p, err := ParseProxies([]string{" ", ""}); p != nil || err != nil {
		t.Errorf("an empty list: %v %v", p, err)
	}
}

func TestClientBehindProxies(t *testing.T) {
	p, err := ParseProxies([]string{"10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		peer   string
		header http.Header
		want   string
	}{
		{"untrusted peer, headers ignored", "203.0.113.5:1000",
			http.Header{"X-Forwarded-For": {"1.1.1.1"}, "Forwarded": {"for=2.2.2.2"}}, "203.0.113.5"},
		{"trusted peer without headers", "10.0.0.1:1000", nil, "10.0.0.1"},
		{"one hop", "10.0.0.1:1000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"the client's own entries are left of it", "10.0.0.1:1000",
			http.Header{"X-Forwarded-For": {"6.6.6.6, 7.7.7.7, 198.51.100.7"}}, "198.51.100.7"},
		{"trusted hops are skipped", "10.0.0.1:1000",
			http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.9.9.9, 127.0.0.1"}}, "198.51.100.7"},
		{"several header lines", "10.0.0.1:1000",
			http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7", "10.2.2.2"}}, "198.51.100.7"},
		{"every hop trusted: the leftmost", "10.0.0.1:1000",
			http.Header{"X-Forwarded-For": {"10.3.3.3, 10.2.2.2"}}, "10.3.3.3"},
		{"a hop that is no address ends the walk", "10.0.0.1:1000",
			http.Header{"X-Forwarded-For": {"198.51.100.7, garbage, 10.2.2.2"}}, "10.2.2.2"},
		{"an empty header", "10.0.0.1:1000", http.Header{"X-Forwarded-For": {""}}, "10.0.0.1"},
		{"a port in X-Forwarded-For", "10.0.0.1:1000", http.Header{"X-Forwarded-For": {"198.51.100.7:4711"}}, "198.51.100.7"},
		{"IPv6 hop", "10.0.0.1:1000", http.Header{"X-Forwarded-For": {"2001:db8::7"}}, "2001:db8::7"},
		{"X-Forwarded-For wins over Forwarded", "10.0.0.1:1000",
			http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Forwarded": {"for=192.0.2.1"}}, "198.51.100.7"},
		{"Forwarded", "10.0.0.1:1000", http.Header{"Forwarded": {"for=192.0.2.60;proto=http;by=203.0.113.43"}}, "192.0.2.60"},
		{"Forwarded, quoted IPv6 with a port", "10.0.0.1:1000",
			http.Header{"Forwarded": {`For="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"Forwarded, several elements and lines", "10.0.0.1:1000",
			http.Header{"Forwarded": {"for=6.6.6.6, for=192.0.2.43", `for="10.1.1.1";proto="a,b"`}}, "192.0.2.43"},
		{"Forwarded, an obfuscated hop ends the walk", "10.0.0.1:1000",
			http.Header{"Forwarded": {"for=192.0.2.43, for=_hidden, for=10.1.1.1"}}, "10.1.1.1"},
		{"Forwarded, unknown", "10.0.0.1:1000", http.Header{"Forwarded": {"for=unknown"}}, "10.0.0.1"},
		{"Forwarded, an element without for", "10.0.0.1:1000", http.Header{"Forwarded": {"proto=https"}}, "10.0.0.1"},
		{"IPv4-mapped trusted peer", "[::ffff:10.0.0.1]:1000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"trusted IPv6 peer", "[2001:db8:ffff::1]:1000", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"a peer that is no address", "pipe", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "pipe"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		r.Header = c.header
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if got := p.Client(r); got != c.want {
			t.Errorf("%s: client %q, want %q", c.name, got, c.want)
		}
	}
}

func TestAttributeFeedsTheConnectionCaps(t *testing.T) {
	p, _ := ParseProxies([]string{"127.0.0.0/8"})
	l := New(0, 1, nil)
	var seen []string
	hold := make(chan func())
	h := p.Attribute(l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, ClientIP(r))
		hold <- Detach(r.Context())
	})))
	serve := func(xff string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = "127.0.0.1:5555"
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	var releases []func()
	for _, xff := range []string{"198.51.100.1", "198.51.100.2", ""} {
		go serve(xff)
		releases = append(releases, <-hold)
	}
	if code := serve("6.6.6.6, 198.51.100.1"); code != http.StatusTooManyRequests {
		t.Fatalf("a second connection of 198.51.100.1: %d", code)
	}
	if len(seen) != 3 || seen[0] != "198.51.100.1" || seen[1] != "198.51.100.2" || seen[2] != "127.0.0.1" {
		t.Fatalf("clients seen %v", seen)
	}
	for _, r := range releases {
		r()
	}
	if l.Open() != 0 {
		t.Fatalf("%d open after release", l.Open())
	}
	// Without trusted proxies, Attribute does nothing and ClientIP is the
	// peer's host.
	var none *Proxies
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "[2001:db8::9]:80"
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	none.Attribute(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := ClientIP(r); got != "2001:db8::9" {
			t.Errorf("ClientIP without trusted proxies: %q", got)
		}
	})).ServeHTTP(httptest.NewRecorder(), req)
}

func TestRates(t *testing.T) {
	if r := NewRates(0, 5); r != nil || r.Take("198.51.100.1", time.Now()) != 0 {
		t.Fatal("a rate of 0 limits")
	}
	if r := NewRates(1, 0); r != nil {
		t.Fatal("a burst of 0 limits")
	}
	r := NewRates(1, 5)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		if w := r.Take("198.51.100.1", t0); w != 0 {
			t.Fatalf("event %d of the burst: wait %v", i+1, w)
		}
	}
	if w := r.Take("198.51.100.1", t0); w != time.Second {
		t.Fatalf("over the burst: wait %v, want 1s", w)
	}
	if w := r.Take("198.51.100.1", t0.Add(400*time.Millisecond)); w != 600*time.Millisecond {
		t.Fatalf("400 ms later: wait %v, want 600ms (a refused event does not count)", w)
	}
	if w := r.Take("198.51.100.1", t0.Add(time.Second)); w != 0 {
		t.Fatalf("a second later: wait %v", w)
	}
	if w := r.Take("198.51.100.2", t0); w != 0 {
		t.Fatalf("another client: wait %v", w)
	}
	for i := 0; i < 20; i++ {
		if r.Take("127.0.0.1", t0) != 0 || r.Take("::1", t0) != 0 || r.Take("", t0) != 0 {
			t.Fatal("loopback or no client limited")
		}
	}
	if n := r.Clients(); n != 2 {
		t.Fatalf("%d buckets, want 2", n)
	}
	// Refilled buckets are forgotten.
	if w := r.Take("198.51.100.3", t0.Add(time.Minute)); w != 0 || r.Clients() != 1 {
		t.Fatalf("a minute later: wait %v, %d buckets, want 1", w, r.Clients())
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
