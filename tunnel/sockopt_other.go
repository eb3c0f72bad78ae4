//go:build !linux

package tunnel

import "net"

// unsentLimit is a no-op where TCP_NOTSENT_LOWAT is not available.
type unsentLimit struct{}

func newUnsentLimit(net.Conn, int) *unsentLimit { return nil }

func (*unsentLimit) set(int) {}

func (*unsentLimit) deliveryRate() uint64 { return 0 }
