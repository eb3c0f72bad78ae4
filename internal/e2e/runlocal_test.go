package e2e

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// runLocal starts scripts/run-local.sh (make run) with this test's binaries,
// its own state directory and the given ports; output is both streams.
func runLocal(t *testing.T, ctx context.Context, ports map[string]int, out *logBuf) *exec.Cmd {
	t.Helper()
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"FLUIDITY_BIN=" + filepath.Dir(agentBin), "FLUIDITY_STATE=" + t.TempDir(), "LOG_LEVEL=debug"}
	for k, v := range ports {
		env = append(env, k+"="+strconv.Itoa(v))
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "run-local.sh"))
	cmd.Env = cleanEnv(env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func localPorts(t *testing.T) map[string]int {
	return map[string]int{"SERVER_PORT": freePort(t), "PROXY_PORT": freePort(t), "ADMIN_PORT": freePort(t), "SOCKS_PORT": freePort(t)}
}

// TestRunLocalRefusesTakenPorts: with one of its ports held by another program,
// make run says which and exits non-zero, instead of reporting someone else's
// proxy as ready.
func TestRunLocalRefusesTakenPorts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ variable, what string }{
		{"SERVER_PORT", "the server's tunnel port"},
		{"PROXY_PORT", "the agent's HTTP proxy"},
		{"ADMIN_PORT", "the agent's status page"},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ports := localPorts(t)
			ports[tc.variable] = ln.Addr().(*net.TCPAddr).Port
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out := newLogBuf()
			err = runLocal(t, ctx, ports, out).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("make run with %s taken: %v, want exit status 1\n%s", tc.variable, err, out.String())
			}
			want := "port " + strconv.Itoa(ports[tc.variable]) + " (" + tc.what
			for _, w := range []string{want, tc.variable + "=<port> make run"} {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "proxy ready") || strings.Contains(out.String(), "server started") {
				t.Errorf("something started:\n%s", out.String())
			}
		})
	}
}

// TestRunLocal: make run starts both daemons, prints the status page, proxies,
// logs no refused handshake of its own (at debug level), and stops cleanly on
// Ctrl-C.
func TestRunLocal(t *testing.T) {
	t.Parallel()
	ports := localPorts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := newLogBuf()
	cmd := runLocal(t, ctx, ports, out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	status := "fluidity: status page http://127.0.0.1:" + strconv.Itoa(ports["ADMIN_PORT"]) + "/"
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(out.String(), status) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), status) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("make run printed no %q:\n%s", status, out.String())
	}
	proxy := "http://127.0.0.1:" + strconv.Itoa(ports["PROXY_PORT"])
	if got := mustCurl(t, "-x", proxy, pingTarget.URL+"/"); string(got) != "pong" {
		t.Errorf("through make run's proxy: %q", got)
	}
	socks := "127.0.0.1:" + strconv.Itoa(ports["SOCKS_PORT"])
	if got := mustCurl(t, "--socks5-hostname", socks, pingTarget.URL+"/"); string(got) != "pong" {
		t.Errorf("through make run's SOCKS5 listener: %q", got)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("make run after Ctrl-C: %v, want exit status 0\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "handshake refused") {
		t.Errorf("make run logged a refused handshake of its own:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "fluidity: stopped") {
		t.Errorf("no clean stop:\n%s", out.String())
	}
}
