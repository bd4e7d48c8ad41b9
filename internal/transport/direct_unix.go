//go:build unix

package transport

import (
	"net"
	"syscall"
)

// directWriter writes to a socket without ever blocking.
type directWriter interface {
	// tryWrite writes what the socket takes of b at once and returns how
	// much that was (0 when it is full, closed or past its deadline).
	tryWrite(b []byte) int
}

// rawWriter is a directWriter on a socket's file descriptor.
type rawWriter struct{ rc syscall.RawConn }

// newDirectWriter returns a directWriter for plain TCP connections, nil for
// others (TLS encrypts in its own writer).
func newDirectWriter(c net.Conn) directWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rawWriter{rc}
}

func (w rawWriter) tryWrite(b []byte) int {
	n := 0
	// Returning true at once makes RawConn.Write try one write and never
	// wait for the socket to drain. The descriptor is non-blocking.
	err := w.rc.Write(func(fd uintptr) bool {
		for {
			m, err := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			if err != syscall.EINTR || n == len(b) {
				return true
			}
		}
	})
	if err != nil {
		return 0 // closed or past the deadline: nothing was written
	}
	return n
}
