package bench

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// stampConn reads with recvmsg and keeps the kernel's receive timestamp
// (SO_TIMESTAMPNS) of the newest data read: when the bytes reached this
// machine's socket, before this process was scheduled to read them. A
// latency measured from it leaves out the load process's own delays.
type stampConn struct {
	*net.TCPConn
	rc   syscall.RawConn
	oob  []byte
	last atomic.Int64 // Unix ns of the newest data read, 0 before any
}

// withRxStamps turns on receive timestamps for c, or returns c as it is
// when that is not possible.
func withRxStamps(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
	if err != nil || serr != nil {
		return c
	}
	return &stampConn{TCPConn: tc, rc: rc, oob: make([]byte, 128)}
}

func (s *stampConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n, oobn int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), p, s.oob, 0)
		return rerr != syscall.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	if msgs, e := syscall.ParseSocketControlMessage(s.oob[:oobn]); e == nil {
		for _, m := range msgs {
			if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
				s.last.Store(sec*1e9 + nsec)
			}
		}
	}
	return n, nil
}

// rxStamp returns the kernel receive time of the newest data read on c,
// if c records it.
func rxStamp(c net.Conn) (time.Time, bool) {
	if cc, ok := c.(*countingConn); ok {
		c = cc.Conn
	}
	s, ok := c.(*stampConn)
	if !ok {
		return time.Time{}, false
	}
	ns := s.last.Load()
	return time.Unix(0, ns), ns != 0
}
