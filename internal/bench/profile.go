package bench

import (
	"context"
	"errors"
	"time"
)

// ProfileLoad runs figure 7's load (64 CONNECT tunnels, keep-alive small
// GETs inside each) through the rig's loopback Fluidity path for dur, for
// the profiles RigOptions.ProfileDir asks for, and returns how many requests
// it measured (divide the profiles by it for per-request costs; the warm-up
// and the daemons' start are in the profiles too, and small beside it).
func ProfileLoad(ctx context.Context, rig *Rig, conns int, dur time.Duration) (int, error) {
	for _, p := range rig.Paths {
		if p.Name == Fluidity {
			_, l, err := TunnelLoad(ctx, p, rig.Target.Addr, nil, conns, dur, nil)
			return len(l), err
		}
	}
	return 0, errors.New("no fluidity path to profile")
}
