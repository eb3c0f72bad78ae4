//go:build linux

package tunnel

import (
	"net"
	"syscall"
)

// tcpNotSentLowat is TCP_NOTSENT_LOWAT from linux/tcp.h.
const tcpNotSentLowat = 0x19

// limitUnsent bounds the bytes that may wait unsent in c's kernel send buffer, when
// c is a TCP conn. Unlike a smaller SO_SNDBUF it does not limit the bytes in flight,
// so it costs no throughput on a long link; it keeps a bulk transfer from queueing
// megabytes in the kernel ahead of an interactive stream's frames.
func limitUnsent(c net.Conn, n int) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat, n)
	})
}
