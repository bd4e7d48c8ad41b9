//go:build !unix

package transport

import "net"

// newDirectWriter returns nil: every frame goes through the writer.
func newDirectWriter(net.Conn) directWriter { return nil }
