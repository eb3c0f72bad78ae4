package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"time"
)

// ProfileLoad runs figure 7's load (64 CONNECT tunnels, keep-alive small
// GETs inside each) or, with plain, figure 3's (keep-alive small GETs through
// the agent's plain-HTTP forwarding) through the rig's loopback Fluidity path
// for dur, for the profiles RigOptions.ProfileDir asks for, and returns how
// many requests it measured (divide the profiles by it for per-request costs;
// the warm-up and the daemons' start are in the profiles too, and small
// beside it).
func ProfileLoad(ctx context.Context, rig *Rig, conns int, dur time.Duration, plain bool) (int, error) {
	for _, p := range rig.Paths {
		if p.Name == Fluidity {
			load := TunnelLoad
			if plain {
				load = func(ctx context.Context, p *Path, addr string, _ *tls.Config, conns int, dur time.Duration, measuring func()) (float64, []time.Duration, error) {
					return SmallLoad(ctx, p, addr, conns, dur, measuring)
				}
			}
			_, l, err := load(ctx, p, rig.Target.Addr, nil, conns, dur, nil)
			return len(l), err
		}
	}
	return 0, errors.New("no fluidity path to profile")
}
