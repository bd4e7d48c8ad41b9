//go:build unix

package transport

import (
	"net"
	"syscall"
)

// rawWriter is a directWriter on a socket's file descriptor. Its calls
// are serialized by the connection's write lock, so it keeps the write's
// arguments in itself rather than in a closure made for each call.
type rawWriter struct {
	rc    syscall.RawConn
	write func(fd uintptr) bool // w.writeFD, bound once
	b     []byte
	n     int
}

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
	w := &rawWriter{rc: rc}
	w.write = w.writeFD
	return w
}

func (w *rawWriter) tryWrite(b []byte) int {
	w.b, w.n = b, 0
	// writeFD returns true at once, so RawConn.Write tries one write and
	// never waits for the socket to drain. The descriptor is non-blocking.
	err := w.rc.Write(w.write)
	n := w.n
	w.b = nil
	if err != nil {
		return 0 // closed or past the deadline: nothing was written
	}
	return n
}

func (w *rawWriter) writeFD(fd uintptr) bool {
	for {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
		}
		if err != syscall.EINTR || w.n == len(w.b) {
			return true
		}
	}
}
