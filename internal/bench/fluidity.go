package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FluidityServer is a running fluidity-server with its certificates.
type FluidityServer struct {
	Addr    string // 127.0.0.1:port
	bins    *FluidityBins
	certDir string
	proc    *Proc
}

// FluidityBins are the paths of the Fluidity executables.
type FluidityBins struct {
	CLI, Server, Agent string
}

// FindFluidity locates the executables in dir: fluidity, fluidity-server
// and fluidity-agent (builds that named the daemons after their package
// directories, server and agent, are accepted too).
func FindFluidity(dir string) (*FluidityBins, error) {
	find := func(names ...string) (string, error) {
		for _, n := range names {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s not found in %s (run `make build-host`)", names[0], dir)
	}
	var b FluidityBins
	var err error
	if b.CLI, err = find("fluidity"); err != nil {
		return nil, err
	}
	if b.Server, err = find("fluidity-server", "server"); err != nil {
		return nil, err
	}
	if b.Agent, err = find("fluidity-agent", "agent"); err != nil {
		return nil, err
	}
	return &b, nil
}

// StartFluidityServer creates certificates in dir and starts the server on a
// free loopback port, allowing loopback targets and enough streams for the
// idle-stream figure. extra flags are appended to the server's command line.
func StartFluidityServer(ctx context.Context, bins *FluidityBins, dir string, extra ...string) (*FluidityServer, error) {
	certDir := filepath.Join(dir, "certs")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bins.CLI, "certs",
		"--dir", certDir, "--server-name", "fluidity-server", "--san", "127.0.0.1", "--client", "agent").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("fluidity certs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	proc, err := StartProc("fluidity-server", bins.Server, append([]string{
		"--listen-addr", "127.0.0.1", "--listen-port", strconv.Itoa(port),
		"--cert-file", filepath.Join(certDir, "server.crt"),
		"--key-file", filepath.Join(certDir, "server.key"),
		"--ca-cert-file", filepath.Join(certDir, "ca.crt"),
		"--allow-cidrs", "127.0.0.0/8",
		"--max-connections", "100000",
		"--log-level", "warn"}, extra...)...)
	if err != nil {
		return nil, err
	}
	s := &FluidityServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), bins: bins, certDir: certDir, proc: proc}
	if err := waitProc(ctx, proc, s.Addr); err != nil {
		proc.Stop()
		return nil, err
	}
	return s, nil
}

// Stop ends the server.
func (s *FluidityServer) Stop() { s.proc.Stop() }

// FluidityAgent is a running fluidity-agent: an HTTP proxy on Addr.
type FluidityAgent struct {
	Addr string
	proc *Proc
}

// StartAgent starts an agent whose tunnel goes to serverAddr (the server,
// or a delay proxy in front of it) and waits until a request to target
// succeeds through it. extra flags are appended to the agent's command line.
func (s *FluidityServer) StartAgent(ctx context.Context, serverAddr, target string, extra ...string) (*FluidityAgent, error) {
	host, sport, _ := net.SplitHostPort(serverAddr)
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	proc, err := StartProc("fluidity-agent", s.bins.Agent, append([]string{
		"--server-ip", host, "--server-port", sport, "--server-name", "fluidity-server",
		"--listen-addr", "127.0.0.1", "--local-proxy-port", strconv.Itoa(port),
		"--cert-file", filepath.Join(s.certDir, "agent.crt"),
		"--key-file", filepath.Join(s.certDir, "agent.key"),
		"--ca-cert-file", filepath.Join(s.certDir, "ca.crt"),
		"--log-level", "warn"}, extra...)...)
	if err != nil {
		return nil, err
	}
	a := &FluidityAgent{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), proc: proc}
	p := a.Path(s)
	err = waitProc(ctx, proc, a.Addr)
	if err == nil {
		err = waitRequest(ctx, p, target)
	}
	if err != nil {
		proc.Stop()
		return nil, fmt.Errorf("fluidity-agent: %w\nagent output:\n%s\nserver output:\n%s", err, proc.Output(), s.proc.Output())
	}
	return a, nil
}

// Stop ends the agent.
func (a *FluidityAgent) Stop() { a.proc.Stop() }

// Path describes the agent as a benchmark path; its cost is agent + server.
func (a *FluidityAgent) Path(s *FluidityServer) *Path {
	return &Path{
		Name:      Fluidity,
		ProxyAddr: a.Addr,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return DialConnect(ctx, a.Addr, addr)
		},
		Procs: func() []int { return []int{a.proc.Pid(), s.proc.Pid()} },
	}
}

// waitProc waits for addr to accept connections, failing early if the
// process exits.
func waitProc(ctx context.Context, p *Proc, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited: %s", p.Name, p.Output())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on %s: %w\n%s", p.Name, addr, ctx.Err(), p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitRequest retries a small request through p until one succeeds both as
// plain HTTP and through Dial.
func waitRequest(ctx context.Context, p *Path, target string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var err error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		err = p.OneShot(rctx, target, true)
		if err == nil {
			err = p.OneShot(rctx, target, false)
		}
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no request through %s succeeded: %w", p.Name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
