package lambdas_test

import (
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// killOnExitTwoAgents (a subtest of TestLambdas, sharing its moto and
// Lambda builds) runs the whole Kill on exit for real: a
// fluidity-server publishing its metrics to moto, the Wake and Kill Lambdas
// under the emulator behind a stand-in API Gateway, and two fluidity-agent
// processes sharing one client certificate (as two agents of one user may).
// The first agent's exit is refused, with a reason naming the other agent,
// while the second keeps its session; once the first's session has left the
// Kill window, the second's exit puts the server to sleep. The metrics
// interval and period are one second here, so the window is 3 s and an
// agent's sessions must have been steady for 4 s.
func killOnExitTwoAgents(t *testing.T, endpoint, wakeBin, killBin string) {
	f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-two", Service: "svc-two", PublicIP: "127.0.0.1"})
	dir := t.TempDir()
	if err := testbin.Build(dir, map[string]string{"fluidity-server": "./daemons/server", "fluidity-agent": "./daemons/agent"}, nil); err != nil {
		t.Fatal(err)
	}

	certs, files := testbin.MintPKI(t, dir, testbin.PKIOptions{})

	port := awstest.FreePort(t)
	server := startProcess(t, "server", filepath.Join(dir, "fluidity-server"), testbin.CleanEnv(awstest.LambdaEnv(endpoint, append(certs.ServerEnv(),
		"FLUIDITY_SERVER_LISTEN_ADDR=127.0.0.1", "FLUIDITY_SERVER_LISTEN_PORT="+strconv.Itoa(port),
		"FLUIDITY_SERVER_EMIT_METRICS=true", "FLUIDITY_SERVER_METRICS_INTERVAL=1s", "FLUIDITY_SERVER_METRICS_SERVICE="+f.Service,
		"FLUIDITY_SERVER_LOG_LEVEL=debug")...)...))
	waitFor(t, server, "server started", 30*time.Second)

	env := lambdaEnv(endpoint, f, "TUNNEL_PORT="+strconv.Itoa(port))
	wake := awstest.StartEmulator(t, wakeBin, env)
	kill := awstest.StartEmulator(t, killBin, append(env, "WAKE_GRACE=1s", "METRICS_INTERVAL=1s", "METRICS_PERIOD=1s"))
	const apiKey = "two-agents"
	gw := httptest.NewServer(&awstest.APIGatewayAdapter{Routes: map[string]string{"/wake": wake.InvokeURL, "/kill": kill.InvokeURL}, APIKey: apiKey})
	t.Cleanup(gw.Close)
	agent := func(name string) *process {
		return startProcess(t, name, filepath.Join(dir, "fluidity-agent"), testbin.CleanEnv(), "--local-proxy-port", strconv.Itoa(awstest.FreePort(t)),
			"--admin-listen", "", "--cert-file", files.AgentCert, "--key-file", files.AgentKey, "--ca-cert-file", files.CACert,
			"--lifecycle-api-endpoint", gw.URL+"/prod", "--lifecycle-api-key", apiKey, "--lifecycle-wake-mode", "on_start",
			"--lifecycle-poll-interval", "200ms", "--lifecycle-wake-wait", "2s", "--connect-retry-interval", "200ms",
			"--sessions", "1", "--log-level", "debug")
	}
	a := agent("agent A")
	waitFor(t, a, "tunnel session established", 60*time.Second)
	b := agent("agent B")
	waitFor(t, b, "tunnel session established", 60*time.Second)
	if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
		t.Fatalf("desired count with two agents = %d, want 1", got)
	}

	// Both sessions steady past the 4 s asked for, and past B's Wake's grace.
	time.Sleep(5 * time.Second)
	a.stop(t)
	if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
		t.Fatalf("the first agent's exit stopped the server under the second: desired %d\n%s\n%s", got, a.out.String(), kill.Logs())
	}
	if log := a.out.String(); !strings.Contains(log, "server left running") || !strings.Contains(log, "another agent is connected") {
		t.Fatalf("the first agent did not log why the server stays up:\n%s", log)
	} else {
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "server left running") {
				t.Logf("agent A: %s", l)
			}
		}
	}
	if strings.Contains(b.out.String(), "tunnel closed") {
		t.Fatalf("the second agent lost its tunnel:\n%s", b.out.String())
	}

	// Once the last datapoint counting A's session has left the 3 s window
	// (it is published within about a second of A's exit), B is alone.
	time.Sleep(5 * time.Second)
	b.stop(t)
	if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
		t.Fatalf("the last agent's exit left the server up: desired %d\n%s\n%s", got, b.out.String(), kill.Logs())
	}
	if !strings.Contains(b.out.String(), "server put to sleep") {
		t.Errorf("the last agent did not log the sleep:\n%s", b.out.String())
	}
}

// process is one of the project's programs running for a test.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    testbin.Output
	exited chan struct{}
}

// startProcess runs bin with env and args; Cleanup kills it if the test
// has not stopped it, and logs its output if the test failed.
func startProcess(t *testing.T, name, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit (the agent's Kill on exit
// happens within it).
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s still running 60 s after SIGTERM", p.name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited %d:\n%s", p.name, code, p.out.String())
	}
}

func waitFor(t *testing.T, p *process, line string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), line) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before logging %q:\n%s", p.name, line, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged %q:\n%s", p.name, line, p.out.String())
		}
	}
}
