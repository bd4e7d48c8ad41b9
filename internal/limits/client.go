package limits

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Client addresses. Every per-client limit (connections per client, rooms
// created per client) and every log line that names a client uses the
// address ClientIP returns. Behind a reverse proxy every request comes from
// the proxy; when the proxy's address is trusted (Proxies), a request is
// attributed to the client its X-Forwarded-For or Forwarded header names.

// Proxies are the trusted reverse proxies: networks whose requests are
// attributed to the client their forwarding headers name. The nil *Proxies
// trusts none, so every request is its TCP peer's.
type Proxies struct {
	nets []netip.Prefix
}

// ParseProxies reads CIDRs (10.0.0.0/8, fd00::/8) and single addresses
// (127.0.0.1, ::1). An empty list gives nil: no proxy is trusted.
func ParseProxies(list []string) (*Proxies, error) {
	var p Proxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			if pfx.Addr().Is4In6() && pfx.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
			}
			p.nets = append(p.nets, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		a = a.Unmap().WithZone("")
		p.nets = append(p.nets, netip.PrefixFrom(a, a.BitLen()))
	}
	if len(p.nets) == 0 {
		return nil, nil
	}
	return &p, nil
}

// Trusted reports whether a is the address of a trusted proxy.
func (p *Proxies) Trusted(a netip.Addr) bool {
	if p == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the address of the client that sent r. A request from an
// address that is not a trusted proxy is its TCP peer's, whatever its
// headers say. A request from a trusted proxy is attributed to the last
// address of X-Forwarded-For (or, without that header, of Forwarded's
// `for=`) that is not a trusted proxy, walking from the right: the
// addresses left of it were written by the client or by proxies nobody
// vouches for. When every address is a trusted proxy, the leftmost is the
// client; an entry that is not an address (`unknown`, an obfuscated name)
// ends the walk, and the client is the hop right of it.
func (p *Proxies) Client(r *http.Request) string {
	peer := hostOf(r.RemoteAddr)
	a, err := netip.ParseAddr(peer)
	if err != nil {
		return peer // not an IP address (a unix socket, a test's RemoteAddr)
	}
	client := a.Unmap().WithZone("")
	if !p.Trusted(client) {
		return client.String()
	}
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = hop
		if !p.Trusted(hop) {
			break
		}
	}
	return client.String()
}

type clientKey struct{}

// Attribute records the client address of every request (see Client) in
// its context, for ClientIP. With no trusted proxy it returns next: the
// client is then always the TCP peer.
func (p *Proxies) Attribute(next http.Handler) http.Handler {
	if p == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey{}, p.Client(r))))
	})
}

// ClientIP returns the client address of a request: the one Attribute
// recorded, or else the host of its TCP peer.
func ClientIP(r *http.Request) string {
	if c, ok := r.Context().Value(clientKey{}).(string); ok {
		return c
	}
	return (*Proxies)(nil).Client(r)
}

// IsLoopback reports whether the client address ip is a loopback one (a
// local tool, or a local proxy that is not trusted): such clients are
// exempt from the per-client limits.
func IsLoopback(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Unmap().IsLoopback()
}

// hostOf returns the host of a host:port address, or addr itself.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// forwardedFor returns the addresses a request was forwarded for, the
// client first: X-Forwarded-For when present (every line of it), else the
// `for=` of every element of Forwarded (RFC 7239). An element without
// `for=` gives an empty entry, which ends the walk in Client.
func forwardedFor(h http.Header) []string {
	var hops []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, line := range xff {
			for _, hop := range strings.Split(line, ",") {
				hops = append(hops, strings.TrimSpace(hop))
			}
		}
		return hops
	}
	for _, line := range h.Values("Forwarded") {
		for _, elem := range splitQuoted(line, ',') {
			hop := ""
			for _, pair := range splitQuoted(elem, ';') {
				name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(name), "for") {
					hop = strings.TrimSpace(value)
				}
			}
			hops = append(hops, hop)
		}
	}
	return hops
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case s[i] == '\\' && quoted:
			i++
		case s[i] == sep && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// parseHop reads one forwarded address: 192.0.2.1, 192.0.2.1:4711,
// 2001:db8::1, [2001:db8::1]:4711, each possibly in double quotes.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		s = s[1:end]
	} else if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
