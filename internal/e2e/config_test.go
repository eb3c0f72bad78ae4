package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runOnce runs a daemon binary that is expected to exit by itself (bad config,
// --help, version) and returns its exit code, stdout and stderr.
func runOnce(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", bin, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not exit by itself", filepath.Base(bin), args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// agentBase is a complete, valid agent command line except for the server.
func agentBase() []string {
	return []string{
		"--server-ip", "127.0.0.1",
		"--cert-file", certPath("agent.crt"), "--key-file", certPath("agent.key"),
		"--ca-cert-file", certPath("ca.crt"),
	}
}

func writeYAML(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigErrors checks that a configuration that cannot work stops the daemon
// at once with exit code 2 and a message naming the key at fault.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	serverBase := []string{
		"--listen-addr", "127.0.0.1", "--listen-port", "0",
		"--cert-file", certPath("server.crt"), "--key-file", certPath("server.key"),
		"--ca-cert-file", certPath("ca.crt"),
	}
	cases := []struct {
		name string
		bin  string
		env  []string
		args []string
		key  string // must appear in stderr
	}{
		{"AgentFlagPortZero", agentBin, nil, append(agentBase(), "--server-port", "0"), "server_port"},
		{"AgentFlagPortRange", agentBin, nil, append(agentBase(), "--local-proxy-port", "70000"), "local_proxy_port"},
		{"AgentFlagNotANumber", agentBin, nil, append(agentBase(), "--server-port", "abc"), "server-port"},
		{"AgentEnvNotANumber", agentBin, []string{"FLUIDITY_AGENT_SERVER_PORT=abc"}, agentBase(), "server_port"},
		{"AgentEnvBadDuration", agentBin, []string{"FLUIDITY_AGENT_DIAL_TIMEOUT=soon"}, agentBase(), "dial_timeout"},
		{"AgentYAMLUnknownKey", agentBin, nil, append(agentBase(), "--config", "YAML:server_ip: 127.0.0.1\nserver_prot: 8443\n"), "server_prot"},
		{"AgentYAMLWrongType", agentBin, nil, append(agentBase(), "--config", "YAML:server_port: [1, 2]\n"), "server_port"},
		{"AgentMissingServer", agentBin, nil, []string{"--cert-file", "x", "--key-file", "y", "--ca-cert-file", "z"}, "server_ip"},
		{"AgentBadLogLevel", agentBin, nil, append(agentBase(), "--log-level", "loud"), "log_level"},
		{"AgentUnknownFlag", agentBin, nil, append(agentBase(), "--no-such-flag"), "no-such-flag"},
		{"ServerMaxConnectionsZero", serverBin, nil, append(serverBase, "--max-connections", "0"), "max_connections"},
		{"ServerBadCIDR", serverBin, nil, append(serverBase, "--allow-cidrs", "10.0.0.0/33"), "allow_cidrs"},
		{"ServerEnvNotANumber", serverBin, []string{"FLUIDITY_SERVER_LISTEN_PORT=abc"}, serverBase, "listen_port"},
		{"ServerYAMLUnknownKey", serverBin, nil, append(serverBase, "--config", "YAML:max_conections: 5\n"), "max_conections"},
		{"AgentEnvUnknown", agentBin, []string{"FLUIDITY_AGENT_SERVER_PROT=8443"}, agentBase(), "did you mean FLUIDITY_AGENT_SERVER_PORT?"},
		{"ServerEnvUnknown", serverBin, []string{"FLUIDITY_SERVER_MAX_CONECTIONS=5"}, serverBase, "did you mean FLUIDITY_SERVER_MAX_CONNECTIONS?"},
		{"AgentMissingCert", agentBin, nil, append(agentBase(), "--cert-file", "/nonexistent/agent.crt"), "cert_file: open /nonexistent/agent.crt"},
		{"ServerMissingKey", serverBin, nil, append(serverBase, "--key-file", "/nonexistent/server.key"), "key_file: open /nonexistent/server.key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if y, ok := strings.CutPrefix(a, "YAML:"); ok {
					args[i] = writeYAML(t, y)
				}
			}
			code, stdout, stderr := runOnce(t, tc.bin, tc.env, args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.key) {
				t.Errorf("stderr does not name %q:\n%s", tc.key, stderr)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 2 {
				t.Errorf("want one clear error, got %d lines:\n%s", n+1, stderr)
			}
		})
	}
}

// TestConfigPrecedence checks, by the port the agent really listens on, that a
// flag beats an environment variable, which beats the YAML file.
func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	srv := startServer(t, serverOpts{})
	_, sport, _ := net.SplitHostPort(srv.addr)
	yamlPort, envPort, flagPort := freePort(t), freePort(t), freePort(t)
	for yamlPort == envPort || envPort == flagPort || yamlPort == flagPort {
		envPort, flagPort = freePort(t), freePort(t)
	}
	cfg := writeYAML(t, fmt.Sprintf(`server_ip: 127.0.0.1
server_port: %s
local_proxy_port: %d
cert_file: %s
key_file: %s
ca_cert_file: %s
shutdown_timeout: 10s
`, sport, yamlPort, certPath("agent.crt"), certPath("agent.key"), certPath("ca.crt")))

	listensOn := func(t *testing.T, env []string, args []string, want int) {
		t.Helper()
		p := startProc(t, "fluidity-agent", agentBin, args, env)
		a := waitAgentStarted(t, p)
		if a.addr != "127.0.0.1:"+strconv.Itoa(want) {
			t.Fatalf("agent listens on %s, want port %d", a.addr, want)
		}
		a.waitHealthz(t)
		a.waitProxied(t)
		if code := p.stop(t); code != 0 {
			t.Fatalf("agent exit code %d", code)
		}
	}
	t.Run("YAML", func(t *testing.T) {
		listensOn(t, nil, []string{"--config", cfg}, yamlPort)
	})
	t.Run("EnvOverYAML", func(t *testing.T) {
		listensOn(t, []string{"FLUIDITY_AGENT_LOCAL_PROXY_PORT=" + strconv.Itoa(envPort)}, []string{"--config", cfg}, envPort)
	})
	t.Run("FlagOverEnvOverYAML", func(t *testing.T) {
		listensOn(t, []string{"FLUIDITY_AGENT_LOCAL_PROXY_PORT=" + strconv.Itoa(envPort)},
			[]string{"--config", cfg, "--local-proxy-port", strconv.Itoa(flagPort)}, flagPort)
	})
}

// TestHelpAndVersion checks --help (exit 0, every flag listed, printed once) and
// the version subcommand of each binary.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		bin   string
		flags []string
	}{
		{"fluidity-agent", agentBin, []string{"--config", "--server-ip", "--server-port", "--server-name", "--local-proxy-port",
			"--listen-addr", "--cert-file", "--key-file", "--ca-cert-file", "--log-level", "--log-format", "--shutdown-timeout"}},
		{"fluidity-server", serverBin, []string{"--config", "--listen-addr", "--listen-port", "--cert-file", "--key-file",
			"--ca-cert-file", "--log-level", "--max-connections", "--allow-cidrs", "--shutdown-timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runOnce(t, tc.bin, nil, "--help")
			if code != 0 {
				t.Fatalf("--help: exit code %d, stderr %s", code, stderr)
			}
			for _, f := range tc.flags {
				if !strings.Contains(stdout, f) {
					t.Errorf("--help does not list %s", f)
				}
			}
			if n := strings.Count(stdout, "Usage:"); n != 1 {
				t.Errorf("--help printed its usage %d times, want once", n)
			}
			code, stdout, stderr = runOnce(t, tc.bin, nil, "version")
			if code != 0 || !regexp.MustCompile(`^`+tc.name+` \S+\n$`).MatchString(stdout) {
				t.Errorf("version: exit code %d, stdout %q, stderr %q", code, stdout, stderr)
			}
		})
	}
	code, stdout, _ := runOnce(t, fluidityBin, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "fluidity ") {
		t.Errorf("fluidity version: exit code %d, stdout %q", code, stdout)
	}
}
