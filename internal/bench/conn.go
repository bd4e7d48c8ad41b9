package bench

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Counter counts the bytes that cross connections in each direction, as
// the TCP payload: HTTP headers, WebSocket frame headers and control
// frames included.
type Counter struct {
	In, Out atomic.Int64 // read from and written to the server
	Conns   atomic.Int64 // connections opened
}

// Snapshot returns the counts now.
func (c *Counter) Snapshot() (in, out int64) { return c.In.Load(), c.Out.Load() }

// countingConn counts a connection's bytes into a Counter.
type countingConn struct {
	net.Conn
	c *Counter
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.In.Add(int64(n))
	return n, err
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.Out.Add(int64(n))
	return n, err
}

// Dial returns a dial function whose connections count into c.
func (c *Counter) Dial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.dial(false)
}

// dial returns a dial function whose connections count into c and, with
// stamps, record the kernel's receive time of what they read (see rxStamp).
func (c *Counter) dial(stamps bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if stamps {
			conn = withRxStamps(conn)
		}
		c.Conns.Add(1)
		return &countingConn{Conn: conn, c: c}, nil
	}
}

// HTTPClient returns an HTTP/1.1 client whose connections count into c and
// that keeps up to maxIdle idle connections to the server.
func (c *Counter) HTTPClient(maxIdle int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         c.Dial(),
		MaxIdleConns:        maxIdle,
		MaxIdleConnsPerHost: maxIdle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}
