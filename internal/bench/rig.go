package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// RigOptions selects what StartRig brings up.
type RigOptions struct {
	BinDir string          // where fluidity, fluidity-server, fluidity-agent live
	Paths  map[string]bool // Direct, Fluidity, SSH; missing means off
	// ProfileDir, if set, makes the loopback Fluidity server and agent write
	// CPU and allocation profiles there (server.cpu.pprof, agent.allocs.pprof,
	// …) when the rig closes.
	ProfileDir string
	// HeapProfileDir, if set, makes the Fluidity server and agents (the
	// 40 ms link's too) write a heap profile of their highest resident
	// memory there as they run (the daemons' heap_profile key):
	// server.heap.pprof, agent.heap.pprof, wan-agent.heap.pprof, each with
	// the runtime's memory figures in a .txt beside it.
	HeapProfileDir string
	Log            func(format string, args ...any)
}

// Rig is the running benchmark environment: the target and every path to
// it. Close stops all of it and removes its files.
type Rig struct {
	Target *Target
	Paths  []*Path // loopback paths in column order
	Notes  []string

	opts       RigOptions
	dir        string
	fserver    *FluidityServer
	sshd       *SSHServer
	wan        *WAN // the delay proxies, started by wanLink
	wanStarted bool // WANPaths has run
	wanPaths   []*Path
	stops      []func() // run in reverse by Close
}

// WANDelay is the one-way delay of the WAN figures (40 ms round trip).
const WANDelay = 20 * time.Millisecond

// StartRig starts the target and the selected paths. Missing Fluidity binaries
// skip that path with a note; a missing OpenSSH is installed when the harness
// runs as root (FindSSH), and failing that fails the run.
func StartRig(ctx context.Context, opts RigOptions) (_ *Rig, err error) {
	r := &Rig{opts: opts}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "fluidity-bench-"); err != nil {
		return nil, err
	}
	r.onClose(func() { os.RemoveAll(r.dir) })
	if r.Target, err = StartTarget(); err != nil {
		return nil, err
	}
	r.onClose(func() { r.Target.Close() })

	for _, c := range Columns {
		if !opts.Paths[c] {
			r.Notes = append(r.Notes, c+" not measured: left out with -paths.")
		}
	}
	if opts.Paths[Direct] {
		r.Paths = append(r.Paths, &Path{Name: Direct, Dial: DialDirect, Procs: func() []int { return nil }})
	}
	if opts.Paths[Fluidity] {
		if bins, err := FindFluidity(opts.BinDir); err != nil {
			r.skip(Fluidity, err)
		} else {
			if r.fserver, err = StartFluidityServer(ctx, bins, r.dir, r.daemonFlags("server")...); err != nil {
				return nil, err
			}
			r.onClose(r.fserver.Stop)
			agent, err := r.fserver.StartAgent(ctx, r.fserver.Addr, r.Target.Addr, r.daemonFlags("agent")...)
			if err != nil {
				return nil, err
			}
			r.onClose(agent.Stop)
			r.Paths = append(r.Paths, agent.Path(r.fserver))
			opts.Log("fluidity: server %s, agent %s", r.fserver.Addr, agent.Addr)
		}
	}
	if opts.Paths[SSH] {
		tools, err := FindSSH(ctx, opts.Log)
		if err != nil {
			return nil, err
		}
		if r.sshd, err = StartSSHServer(ctx, tools, r.dir); err != nil {
			return nil, err
		}
		r.onClose(r.sshd.Stop)
		client, err := r.sshd.StartClient(ctx, r.sshd.Addr, r.Target.Addr)
		if err != nil {
			return nil, err
		}
		r.onClose(client.Stop)
		r.Paths = append(r.Paths, client.Path())
		opts.Log("ssh: sshd %s, ssh -D %s (sessions %v)", r.sshd.Addr, client.Addr, client.sessions)
	}
	return r, nil
}

// daemonFlags are the flags writing role's profiles: CPU and allocations
// (ProfileDir) for the loopback daemons, peak heap (HeapProfileDir) for all.
func (r *Rig) daemonFlags(role string) []string {
	var f []string
	if dir := r.opts.ProfileDir; dir != "" && role != "wan-agent" {
		f = append(f,
			"--cpu-profile", filepath.Join(dir, role+".cpu.pprof"),
			"--mem-profile", filepath.Join(dir, role+".allocs.pprof"))
	}
	if dir := r.opts.HeapProfileDir; dir != "" {
		f = append(f, "--heap-profile", filepath.Join(dir, role+".heap.pprof"))
	}
	return f
}

func (r *Rig) skip(path string, err error) {
	note := fmt.Sprintf("%s skipped: %v", path, err)
	r.Notes = append(r.Notes, note)
	r.opts.Log("%s", note)
}

func (r *Rig) onClose(f func()) { r.stops = append(r.stops, f) }

// WANPaths returns the paths with a 40 ms round trip inserted: between
// agent and server, between ssh and sshd, and in front of the target for
// direct. They are started on first use.
func (r *Rig) WANPaths(ctx context.Context) ([]*Path, error) {
	if r.wanStarted {
		return r.wanPaths, nil
	}
	r.wanStarted = true
	for _, p := range r.Paths {
		switch p.Name {
		case Direct:
			// One delay proxy in front of every address of the target (its
			// HTTPS origins too); Dial picks the one for the address asked.
			via := map[string]string{}
			for i, a := range append([]string{r.Target.Addr}, r.Target.Origins.Addrs...) {
				addr, err := r.wanLink().Add(fmt.Sprintf("direct-%d", i), a, WANDelay)
				if err != nil {
					return nil, err
				}
				via[a] = addr
			}
			r.wanPaths = append(r.wanPaths, &Path{
				Name: Direct,
				Dial: func(ctx context.Context, a string) (_ net.Conn, err error) {
					addr, ok := via[a]
					if !ok {
						return nil, fmt.Errorf("no delayed route to %s", a)
					}
					return DialDirect(ctx, addr)
				},
				Procs: func() []int { return nil },
			})
		case Fluidity:
			addr, err := r.wanLink().Add("fluidity", r.fserver.Addr, WANDelay)
			if err != nil {
				return nil, err
			}
			agent, err := r.fserver.StartAgent(ctx, addr, r.Target.Addr, r.daemonFlags("wan-agent")...)
			if err != nil {
				return nil, err
			}
			r.onClose(agent.Stop)
			r.wanPaths = append(r.wanPaths, agent.Path(r.fserver))
		case SSH:
			addr, err := r.wanLink().Add("ssh", r.sshd.Addr, WANDelay)
			if err != nil {
				return nil, err
			}
			client, err := r.sshd.StartClient(ctx, addr, r.Target.Addr)
			if err != nil {
				return nil, err
			}
			r.onClose(client.Stop)
			r.wanPaths = append(r.wanPaths, client.Path())
		}
	}
	return r.wanPaths, nil
}

// wanLink returns the rig's delay proxies, starting them on first use.
func (r *Rig) wanLink() *WAN {
	if r.wan == nil {
		r.wan = NewWAN()
		r.onClose(r.wan.Close)
	}
	return r.wan
}

// Close stops everything the rig started, newest first, and removes its
// temporary directory.
func (r *Rig) Close() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
	r.stops = nil
}
