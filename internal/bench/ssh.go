package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SSHTools are the OpenSSH executables the benchmark needs.
type SSHTools struct {
	SSHD, SSH, Keygen string
}

// FindSSH locates sshd, ssh and ssh-keygen. When sshd or ssh is missing and
// the harness runs as root, it installs them with apt-get.
func FindSSH(ctx context.Context, log func(string, ...any)) (*SSHTools, error) {
	find := func() (*SSHTools, error) {
		var t SSHTools
		for _, f := range []struct {
			dst   *string
			name  string
			paths []string
		}{
			{&t.SSHD, "sshd", []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"}},
			{&t.SSH, "ssh", []string{"/usr/bin/ssh"}},
			{&t.Keygen, "ssh-keygen", []string{"/usr/bin/ssh-keygen"}},
		} {
			for _, p := range f.paths {
				if _, err := os.Stat(p); err == nil {
					*f.dst = p
					break
				}
			}
			if *f.dst == "" {
				p, err := exec.LookPath(f.name)
				if err != nil {
					return nil, fmt.Errorf("%s not found", f.name)
				}
				if *f.dst, err = filepath.Abs(p); err != nil {
					return nil, err
				}
			}
		}
		return &t, nil
	}
	t, err := find()
	if err == nil {
		return t, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: install OpenSSH (e.g. `sudo apt-get install -y openssh-server openssh-client`) or rerun as root", err)
	}
	log("%v; installing openssh-server and openssh-client with apt-get "+
		"(the benchmark runs its own sshd on 127.0.0.1; on a systemd machine the package also enables the system sshd)", err)
	install := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, lastLines(string(out), 10))
		}
		return nil
	}
	if err := install("install", "-y", "openssh-server", "openssh-client"); err != nil {
		if err := install("update"); err != nil {
			return nil, err
		}
		if err := install("install", "-y", "openssh-server", "openssh-client"); err != nil {
			return nil, err
		}
	}
	return find()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// SSHServer is a throwaway sshd on loopback accepting one generated key.
type SSHServer struct {
	Addr  string
	tools *SSHTools
	dir   string
	user  string
	proc  *Proc
}

// StartSSHServer generates host and user keys in dir and starts sshd on a
// free loopback port with its own configuration.
func StartSSHServer(ctx context.Context, tools *SSHTools, dir string) (*SSHServer, error) {
	dir = filepath.Join(dir, "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, k := range []string{"host_ed25519", "user_ed25519"} {
		out, err := exec.CommandContext(ctx, tools.Keygen, "-q", "-t", "ed25519", "-N", "", "-C", "fluidity-bench",
			"-f", filepath.Join(dir, k)).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "user_ed25519.pub"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// sshd refuses to start without its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cfg := strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"Port " + strconv.Itoa(port),
		"HostKey " + filepath.Join(dir, "host_ed25519"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"UsePAM no",
		"AllowTcpForwarding yes",
		"LogLevel ERROR",
		"",
	}, "\n")
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	proc, err := StartProc("sshd", tools.SSHD, "-D", "-e", "-f", cfgPath)
	if err != nil {
		return nil, err
	}
	s := &SSHServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), tools: tools, dir: dir, user: u.Username, proc: proc}
	if err := waitProc(ctx, proc, s.Addr); err != nil {
		proc.Stop()
		return nil, err
	}
	return s, nil
}

// Stop ends sshd and its sessions.
func (s *SSHServer) Stop() { s.proc.Stop() }

// SSHClient is a running `ssh -N -D`: a SOCKS5 proxy on Addr.
type SSHClient struct {
	Addr     string
	proc     *Proc
	sessions []int // sshd processes serving this client
}

// StartClient runs ssh -D to sshAddr (sshd, or a delay proxy in front of it)
// and waits until a request to target succeeds through it.
func (s *SSHServer) StartClient(ctx context.Context, sshAddr, target string) (*SSHClient, error) {
	host, sport, _ := net.SplitHostPort(sshAddr)
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	before := map[int]bool{}
	for _, p := range Descendants(s.proc.Pid()) {
		before[p] = true
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	proc, err := StartProc("ssh", s.tools.SSH, "-N", "-D", addr, "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR",
		"-i", filepath.Join(s.dir, "user_ed25519"), "-p", sport, s.user+"@"+host)
	if err != nil {
		return nil, err
	}
	c := &SSHClient{Addr: addr, proc: proc}
	err = waitProc(ctx, proc, addr)
	if err == nil {
		err = waitRequest(ctx, c.Path(), target)
	}
	if err != nil {
		proc.Stop()
		return nil, fmt.Errorf("ssh -D: %w\nssh output:\n%s\nsshd output:\n%s", err, proc.Output(), s.proc.Output())
	}
	// The session processes sshd forked for this client: give them a moment
	// to settle (privilege separation forks after authentication).
	time.Sleep(200 * time.Millisecond)
	for _, p := range Descendants(s.proc.Pid()) {
		if !before[p] {
			c.sessions = append(c.sessions, p)
		}
	}
	return c, nil
}

// Stop ends the ssh client.
func (c *SSHClient) Stop() { c.proc.Stop() }

// Path describes the client as a benchmark path; its cost is the ssh client
// plus the sshd processes serving it.
func (c *SSHClient) Path() *Path {
	return &Path{
		Name: SSH,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return DialSOCKS5(ctx, c.Addr, addr)
		},
		Procs: func() []int { return append([]int{c.proc.Pid()}, c.sessions...) },
	}
}
