package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// minAttemptTimeout keeps a long address list from dividing the deadline into
// slices too short for any single connect to succeed (same floor as net.Dialer).
const minAttemptTimeout = 2 * time.Second

// approvedKey carries the addresses DialContext has checked down to the
// default dialer's Control hook.
type approvedKey struct{}

// DialContext resolves and checks addr (see Resolve), then dials the checked
// IP addresses in turn, alternating IPv4 and IPv6, until one connects. It never
// hands the host name to the dialer, so the name cannot be re-resolved to a
// different address between check and connect. network is "tcp", "tcp4",
// "tcp6", "udp", "udp4" or "udp6".
//
// Its signature fits http.Transport.DialContext.
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var ipNet string
	switch network {
	case "tcp", "udp":
		ipNet = "ip"
	case "tcp4", "udp4":
		ipNet = "ip4"
	case "tcp6", "udp6":
		ipNet = "ip6"
	default:
		return nil, fmt.Errorf("egress: %w", net.UnknownNetworkError(network))
	}
	targets, err := p.resolve(ctx, ipNet, addr)
	if err != nil {
		return nil, err
	}
	targets = interleave(targets)
	ctx = context.WithValue(ctx, approvedKey{}, targets)

	var firstErr error
	for i, t := range targets {
		if err := ctx.Err(); err != nil {
			if firstErr == nil {
				firstErr = &net.OpError{Op: "dial", Net: network, Err: err}
			}
			break
		}
		attemptCtx, cancel := partialDeadline(ctx, len(targets)-i)
		c, err := p.dialer.DialContext(attemptCtx, network, t.String())
		cancel()
		if err == nil {
			return c, nil
		}
		// The first error is usually the most telling (like net.Dialer):
		// later ones are often just the deadline running out. It is returned
		// unwrapped so callers can still type-assert net.Error.
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// partialDeadline gives the current attempt a fair share of the remaining
// time so a black-holed first address cannot use up the whole budget.
func partialDeadline(ctx context.Context, remaining int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || remaining <= 1 {
		return context.WithCancel(ctx)
	}
	left := time.Until(deadline)
	share := left / time.Duration(remaining)
	if share < minAttemptTimeout {
		share = min(minAttemptTimeout, left)
	}
	return context.WithTimeout(ctx, share)
}

// interleave reorders addresses to alternate families, starting with the
// family of the first answer, so a broken IPv6 (or IPv4) path costs at most
// one attempt before the other family is tried (RFC 8305 section 4).
func interleave(in []netip.AddrPort) []netip.AddrPort {
	if len(in) < 2 {
		return in
	}
	first := in[0].Addr().Is4()
	var a, b []netip.AddrPort
	for _, ap := range in {
		if ap.Addr().Is4() == first {
			a = append(a, ap)
		} else {
			b = append(b, ap)
		}
	}
	out := make([]netip.AddrPort, 0, len(in))
	for len(a) > 0 || len(b) > 0 {
		if len(a) > 0 {
			out = append(out, a[0])
			a = a[1:]
		}
		if len(b) > 0 {
			out = append(out, b[0])
			b = b[1:]
		}
	}
	return out
}

// control is the default dialer's last line of defence: it runs just before
// connect(2) with the socket address the kernel will use, and refuses any
// address that DialContext did not approve for this dial. It fails closed if
// the approval list is missing, which can only happen if the dialer is used
// other than through DialContext.
func (p *Policy) control(ctx context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Host: address, Reason: "unparseable socket address"}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	approved, _ := ctx.Value(approvedKey{}).([]netip.AddrPort)
	if !slices.Contains(approved, ap) {
		return &RefusedError{Host: address, Addr: ap.Addr(), Reason: "address not approved by policy check"}
	}
	return nil
}
