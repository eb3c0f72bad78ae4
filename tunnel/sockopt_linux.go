//go:build linux

package tunnel

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpNotSentLowat is TCP_NOTSENT_LOWAT from linux/tcp.h.
const tcpNotSentLowat = 0x19

// unsentLimit bounds the bytes that may wait unsent in a TCP conn's kernel send
// buffer (TCP_NOTSENT_LOWAT). Unlike a smaller SO_SNDBUF it does not limit the
// bytes in flight, so it costs no throughput on a long link; it keeps a bulk
// transfer from queueing megabytes in the kernel ahead of an interactive
// stream's frames. Only the flusher changes it; set skips the system call
// when the value is unchanged.
type unsentLimit struct {
	rc  syscall.RawConn
	cur int
}

// newUnsentLimit sets c's limit to n and returns it for changing, or nil when
// c is not a TCP conn.
func newUnsentLimit(c net.Conn, n int) *unsentLimit {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	u := &unsentLimit{rc: rc}
	u.set(n)
	return u
}

func (u *unsentLimit) set(n int) {
	if u == nil || u.cur == n {
		return
	}
	u.cur = n
	_ = u.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat, n)
	})
}

// deliveryRate is the kernel's latest goodput estimate for the conn, in bytes
// per second (tcpi_delivery_rate), or 0 when it cannot be had.
func (u *unsentLimit) deliveryRate() uint64 {
	if u == nil {
		return 0
	}
	var rate uint64
	_ = u.rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			rate = info.Delivery_rate
		}
	})
	return rate
}
