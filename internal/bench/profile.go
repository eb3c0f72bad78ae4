package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The loads ProfileLoad runs.
const (
	ProfileConnect = "connect" // figure 7's: small keep-alive GETs inside 64 CONNECT tunnels
	ProfileHTTPS   = "https"   // figure 7's second: the same with TLS to the target inside every tunnel
	ProfileHTTP    = "http"    // figure 3's: keep-alive small GETs through the agent's plain-HTTP forwarding
)

// ProfileLoad runs one of figure 7's or figure 3's loads (kind: ProfileConnect,
// ProfileHTTPS or ProfileHTTP) through the rig's loopback Fluidity path for
// dur, for the profiles RigOptions.ProfileDir asks for, and returns how many
// requests it measured (divide the profiles by it for per-request costs; the
// warm-up and the daemons' start are in the profiles too, and small beside it).
func ProfileLoad(ctx context.Context, rig *Rig, kind string, conns int, dur time.Duration) (int, error) {
	for _, p := range rig.Paths {
		if p.Name != Fluidity {
			continue
		}
		var l []time.Duration
		var err error
		switch kind {
		case ProfileConnect:
			_, l, err = TunnelLoad(ctx, p, rig.Target.Addr, nil, conns, dur, nil)
		case ProfileHTTPS:
			o := rig.Target.Origins
			_, l, err = TunnelLoad(ctx, p, o.Addrs[0], o.ClientConfig(), conns, dur, nil)
		case ProfileHTTP:
			_, l, err = SmallLoad(ctx, p, rig.Target.Addr, conns, dur, nil)
		default:
			return 0, fmt.Errorf("profile load %q: want %s, %s or %s", kind, ProfileConnect, ProfileHTTPS, ProfileHTTP)
		}
		return len(l), err
	}
	return 0, errors.New("no fluidity path to profile")
}
