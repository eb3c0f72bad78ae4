//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// TestServiceUnderSystemd installs, starts, kills, stops and uninstalls the real
// agent binary as a systemd user unit, under a real systemd user manager with
// journald. The machine need not have booted with systemd: both run in a private
// mount namespace with a tmpfs over /run, where /run/systemd/system (systemd's
// sign of a systemd machine) and journald's sockets exist, leaving the
// machine's /run alone.
func TestServiceUnderSystemd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as make test requires: the user manager runs in a private mount namespace")
	}
	t.Parallel()
	const systemdBin, journaldBin = "/lib/systemd/systemd", "/lib/systemd/systemd-journald"
	for _, p := range []string{systemdBin, journaldBin} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (Debian package systemd; scripts/ci-deps.sh installs it)", err)
		}
	}
	for _, c := range []string{"unshare", "nsenter", "systemctl", "journalctl"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := testbin.Build(bin, map[string]string{"fluidity-agent": "./daemons/agent"}, nil); err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(bin, "fluidity-agent")
	home, runtimeDir, work := filepath.Join(dir, "home"), filepath.Join(dir, "run"), filepath.Join(dir, "my config")
	for _, d := range []string{home, runtimeDir, work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	proxyPort, err := testbin.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	conf := writeAgentConfig(t, work, proxyPort)
	env := append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+runtimeDir)

	ns := startUserManager(t, env, systemdBin, journaldBin, runtimeDir)

	svc := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(agent, append([]string{"service"}, args...)...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("service %s: exit %d, want %d:\n%s\njournal:\n%s", strings.Join(args, " "), code, wantCode, out.String(), ns.journal(t))
		}
		return strings.TrimSpace(out.String())
	}

	unitPath := filepath.Join(home, ".config", "systemd", "user", serviceName+".service")
	// Without systemctl the install fails, and leaves no unit behind to block the next one.
	noSystemctl := exec.Command(agent, "service", "install", "--config", conf)
	noSystemctl.Env = append(env, "PATH="+t.TempDir())
	if out, err := noSystemctl.CombinedOutput(); err == nil {
		t.Errorf("install without systemctl succeeded:\n%s", out)
	}
	if _, err := os.Stat(unitPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed install left %s: %v", unitPath, err)
	}

	svc(0, "install", "--config", conf)
	written, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := systemdUnit(serviceSpec{Executable: agent, Config: conf, StopTimeout: 5*time.Second + stopMargin})
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != want {
		t.Errorf("installed unit:\n%s\nwant:\n%s", written, want)
	}
	verifyUnit(t, "systemd-analyze", string(written))
	if _, err := os.Lstat(filepath.Join(home, ".config", "systemd", "user", "default.target.wants", serviceName+".service")); err != nil {
		t.Errorf("install did not enable the unit (it would not start at login): %v", err)
	}
	svc(1, "install", "--config", conf) // already installed
	if got := svc(3, "status"); got != "stopped" {
		t.Errorf("status after install = %q, want stopped", got)
	}

	svc(0, "start")
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "through the service")
	}))
	defer target.Close()
	waitProxied(t, proxyPort, target.URL, ns)
	if got := svc(0, "status"); got != "running" {
		t.Errorf("status after start = %q, want running", got)
	}

	// A crash is restarted (Restart=on-failure, RestartSec=5).
	pid := ns.systemctl(t, "show", "-p", "MainPID", "--value", serviceName+".service")
	if n, err := strconv.Atoi(pid); err != nil || n <= 0 {
		t.Fatalf("MainPID = %q", pid)
	}
	n, _ := strconv.Atoi(pid)
	if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a new agent process after SIGKILL", func() bool {
		p := ns.systemctl(t, "show", "-p", "MainPID", "--value", serviceName+".service")
		return p != "0" && p != pid
	})
	waitProxied(t, proxyPort, target.URL, ns)

	// A stop is SIGTERM: the graceful shutdown runs, and the journal has the log.
	svc(0, "stop")
	if got := svc(3, "status"); got != "stopped" {
		t.Errorf("status after stop = %q, want stopped", got)
	}
	if result := ns.systemctl(t, "show", "-p", "Result", "--value", serviceName+".service"); result != "success" {
		t.Errorf("the unit's result after stop = %q, want success (exit 0 on SIGTERM)", result)
	}
	journal := ns.journal(t)
	for _, want := range []string{`"message":"agent started"`, `"message":"shutting down: finishing requests in flight"`, `"message":"agent stopped"`} {
		if !strings.Contains(journal, want) {
			t.Errorf("the journal lacks %s:\n%s", want, journal)
		}
	}

	svc(0, "uninstall")
	if _, err := os.Stat(unitPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unit file is still there after uninstall: %v", err)
	}
	if got := svc(3, "status"); got != "not installed" {
		t.Errorf("status after uninstall = %q, want not installed", got)
	}
}

type userManager struct {
	pid int // the namespace's first process: journalctl runs in its mount namespace
	env []string
}

// startUserManager starts journald and a systemd user manager in a private
// mount namespace and stops both at the test's end.
func startUserManager(t *testing.T, env []string, systemdBin, journaldBin, runtimeDir string) *userManager {
	t.Helper()
	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system /run/systemd/journal /run/log
` + journaldBin + ` & journald=$!
for i in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
` + systemdBin + ` --user & manager=$!
trap 'kill $manager; wait $manager; kill $journald; wait $journald; exit 0' TERM
wait $manager
`
	var logs bytes.Buffer
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed by the cleanup below; its status says nothing
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("the user manager did not stop on SIGTERM; its output:\n%s", logs.String())
		}
	})
	m := &userManager{pid: cmd.Process.Pid, env: env}
	waitFor(t, 15*time.Second, "the user manager's socket", func() bool {
		_, err := os.Stat(filepath.Join(runtimeDir, "systemd", "private"))
		return err == nil
	})
	return m
}

func (m *userManager) systemctl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("systemctl", append([]string{"--user"}, args...)...)
	cmd.Env = m.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemctl --user %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// journal is what the agent logged, read from inside the namespace.
func (m *userManager) journal(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(m.pid), "-m", "journalctl", "--no-pager", "-o", "cat", "-t", serviceName)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(journalctl: %v) %s", err, out)
	}
	return string(out)
}

// waitProxied waits until a GET through the agent's proxy reaches target.
func waitProxied(t *testing.T, proxyPort int, target string, m *userManager) {
	t.Helper()
	proxyURL := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(proxyPort)}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var last string
	ok := poll(20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %q", resp.StatusCode, body)
		return resp.StatusCode == http.StatusOK && string(body) == "through the service"
	})
	if !ok {
		t.Fatalf("no answer through the service's proxy (last: %s); journal:\n%s", last, m.journal(t))
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(limit, cond) {
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// poll checks cond every 100 ms until it holds or limit passes: these are real
// processes under a real service manager, which no fake clock can drive.
func poll(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
