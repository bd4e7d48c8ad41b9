//go:build !unix

package transport

import "net"

// directWriter writes to a socket without ever blocking.
type directWriter interface {
	tryWrite(b []byte) int
}

// newDirectWriter returns nil: every frame goes through the writer.
func newDirectWriter(net.Conn) directWriter { return nil }
