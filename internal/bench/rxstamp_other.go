//go:build !linux

package bench

import (
	"net"
	"time"
)

func withRxStamps(c net.Conn) net.Conn { return c }

func rxStamp(net.Conn) (time.Time, bool) { return time.Time{}, false }
