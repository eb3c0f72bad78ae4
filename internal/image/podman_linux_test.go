package image_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/fluidity-tunnel/fluidity/internal/image"
	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// containersConf makes podman work on these machines: runc (crun fails on
// this kernel's cgroup setup), no default ulimits (setting them fails here),
// cgroupfs and file events (no systemd).
const containersConf = `[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`

// podman runs podman with storage, run state and configuration of its own
// under one directory, so tests never touch (or race with) the machine's.
type podman struct {
	t    *testing.T
	bin  string
	dir  string
	args []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as make test requires: podman runs rootful here")
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman not found: scripts/ci-deps.sh installs podman and runc")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err := os.Stat("/usr/sbin/runc"); err != nil {
			t.Fatal("runc not found: scripts/ci-deps.sh installs it")
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "containers.conf"), []byte(containersConf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, bin: bin, dir: dir, args: []string{
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"),
		// vfs: no overlay mounts to leave behind, and images of a few MB copy fast.
		"--storage-driver", "vfs",
	}}
	return p
}

func (p *podman) cmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, p.bin, append(append([]string(nil), p.args...), args...)...)
	c.Env = append(cleanEnv(), "CONTAINERS_CONF="+filepath.Join(p.dir, "containers.conf"))
	c.Env = append(c.Env, env...)
	c.WaitDelay = 5 * time.Second
	return c
}

// run runs podman and returns its stdout; a failure fails the test.
func (p *podman) run(env []string, args ...string) string {
	p.t.Helper()
	out, err := p.try(env, args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// try runs podman; the error carries stderr.
func (p *podman) try(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	c := p.cmd(ctx, env, args...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}

// logs returns the container's output: podman logs writes the container's
// stderr, where the server logs, to its own stderr.
func (p *podman) logs(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := p.cmd(ctx, nil, "logs", name).CombinedOutput()
	return string(out)
}

// cleanEnv is the environment without settings that would change how the
// daemons or podman behave.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		uk := strings.ToUpper(k)
		if strings.HasPrefix(uk, "FLUIDITY_") || strings.HasSuffix(uk, "_PROXY") || strings.HasPrefix(uk, "CONTAINERS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

const testVersion = "podman-test"

// TestServerImageInPodman builds the server image for this machine's
// architecture from a freshly built binary, loads its OCI archive into podman
// and runs it as a container with its TLS material in the environment (as
// infra/fargate.yaml passes it); a real agent on the host tunnels requests
// through it to targets on the host, and the image's own health check
// reports healthy. The container shares the host's network (the simplest way
// for it to reach the host's targets); the server binds 127.0.0.1 only.
func TestServerImageInPodman(t *testing.T) {
	pm := newPodman(t)
	tmp := t.TempDir()
	start := time.Now()

	// The binaries, built as the Makefile builds them.
	arch := runtime.GOARCH
	serverName := "fluidity-server-linux-" + arch
	bins := filepath.Join(tmp, "dist")
	// Two links at once: each is seconds of one core.
	errs := make(chan error, 2)
	for name, pkg := range map[string]string{serverName: "./daemons/server", "fluidity-agent": "./daemons/agent"} {
		go func() {
			errs <- testbin.Build(bins, map[string]string{name: pkg}, []string{"GOOS=linux", "GOARCH=" + arch},
				"-ldflags", "-s -w -X github.com/fluidity-tunnel/fluidity/internal/buildinfo.Version="+testVersion)
		}()
	}
	if err := errors.Join(<-errs, <-errs); err != nil {
		t.Fatal(err)
	}
	t.Logf("binaries built in %v", time.Since(start).Round(time.Millisecond))

	// Targets on the host: plain HTTP, and HTTPS whose certificate only the
	// image's CA bundle vouches for, so that a request to it proves the bundle
	// is installed where the server looks.
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the host "+r.URL.Path)
	}))
	defer target.Close()
	tlsTarget := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello over tls "+r.URL.Path)
	}))
	defer tlsTarget.Close()

	opts := image.Server()
	opts.Version, opts.Revision = testVersion, "0000000000000000000000000000000000000000"
	opts.CABundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsTarget.Certificate().Raw})
	plat := image.Platform{OS: "linux", Arch: arch}
	idx, err := image.Build(context.Background(), map[image.Platform]string{plat: filepath.Join(bins, serverName)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(tmp, "fluidity-server.oci.tar")
	writeArchive(t, archive, idx, "fluidity-server:"+testVersion)

	out := pm.run(nil, "load", "--quiet", "-i", archive)
	ref := "localhost/fluidity-server:" + testVersion
	if !strings.Contains(out, ref) {
		t.Fatalf("podman load: %q, want it to name %s", out, ref)
	}
	t.Logf("image built and loaded at %v", time.Since(start).Round(time.Millisecond))
	inspect := pm.run(nil, "image", "inspect", "--format",
		`{{.Config.User}}|{{index .Labels "org.opencontainers.image.version"}}|{{.HealthCheck.Test}}`, ref)
	if want := "65532:65532|" + testVersion + "|[CMD /fluidity-server healthcheck]"; strings.TrimSpace(inspect) != want {
		t.Errorf("image inspect: %q, want %q (user, version label, health check)", strings.TrimSpace(inspect), want)
	}

	// The server container, its TLS material in the environment.
	tpki, certs := testbin.MintPKI(t, filepath.Join(tmp, "certs"), testbin.PKIOptions{
		CA: pki.CAOptions{CommonName: "podman test CA"}, AgentName: "podman-test-agent",
	})
	port, err := testbin.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	name := "fluidity-server-" + strconv.Itoa(os.Getpid())
	env := tpki.ServerEnv()
	pm.run(env, "run", "--detach", "--name", name, "--network", "host",
		// -e NAME without a value passes podman's own: the key stays out of argv.
		"-e", "FLUIDITY_SERVER_CERT_PEM", "-e", "FLUIDITY_SERVER_KEY_PEM", "-e", "FLUIDITY_SERVER_CA_CERT_PEM",
		"-e", "FLUIDITY_SERVER_LISTEN_ADDR=127.0.0.1", "-e", "FLUIDITY_SERVER_LISTEN_PORT="+strconv.Itoa(port),
		"-e", "FLUIDITY_SERVER_ALLOW_CIDRS=127.0.0.0/8", "-e", "FLUIDITY_SERVER_SHUTDOWN_TIMEOUT=5s",
		ref)
	stopped := false
	t.Cleanup(func() {
		if !stopped || t.Failed() {
			t.Logf("container logs:\n%s", pm.logs(name))
		}
		_, _ = pm.try(nil, "rm", "--force", "--time", "0", name)
	})
	waitLog(t, pm, name, `"message":"server started"`)
	t.Logf("container started at %v", time.Since(start).Round(time.Millisecond))

	// The process in the container runs as the image's non-root user.
	pid := strings.TrimSpace(pm.run(nil, "inspect", "--format", "{{.State.Pid}}", name))
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !regexpUID65532(string(status)) {
		t.Errorf("container process /proc/%s/status does not show uid 65532:\n%s", pid, status)
	}

	// The image's health check, run by podman inside the container.
	if out, err := pm.try(nil, "healthcheck", "run", name); err != nil {
		t.Errorf("podman healthcheck run: %v %s", err, out)
	}
	if h := strings.TrimSpace(pm.run(nil, "inspect", "--format", "{{.State.Health.Status}}", name)); h != "healthy" {
		t.Errorf("health status %q, want healthy", h)
	}

	// A real agent on the host, tunnelling through the container.
	proxyPort, err := testbin.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(filepath.Join(bins, "fluidity-agent"),
		"--server-ip", "127.0.0.1", "--server-port", strconv.Itoa(port),
		"--local-proxy-port", strconv.Itoa(proxyPort),
		"--cert-file", certs.AgentCert, "--key-file", certs.AgentKey, "--ca-cert-file", certs.CACert,
		"--shutdown-timeout", "5s")
	agent.Env = cleanEnv()
	var agentLog bytes.Buffer
	agent.Stderr = &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Wait() }()
	defer func() {
		_ = agent.Process.Signal(os.Interrupt)
		select {
		case err := <-agentDone:
			if err != nil {
				t.Errorf("agent exited with %v after SIGINT", err)
			}
		case <-time.After(15 * time.Second):
			_ = agent.Process.Kill()
			<-agentDone //nolint:errcheck // killed: its exit status tells nothing
			t.Error("agent still running 15 s after SIGINT")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLog.String())
		}
	}()

	proxyAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(proxyPort))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr})}}
	body := waitProxied(t, client, target.URL+"/through-the-container", agentDone)
	if want := "hello from the host /through-the-container"; body != want {
		t.Errorf("proxied GET: %q, want %q", body, want)
	}
	t.Logf("first request through the container at %v", time.Since(start).Round(time.Millisecond))

	// An absolute https:// URL sent to the proxy as plain HTTP: the server in
	// the container makes the TLS connection and verifies the target with the
	// image's CA bundle.
	if got, want := absoluteHTTPS(t, proxyAddr, tlsTarget.URL+"/verified"), "hello over tls /verified"; got != want {
		t.Errorf("GET %s/verified through the proxy: %q, want %q", tlsTarget.URL, got, want)
	}

	// SIGTERM (podman stop) ends the server cleanly: exit code 0.
	pm.run(nil, "stop", "--time", "20", name)
	if code := strings.TrimSpace(pm.run(nil, "inspect", "--format", "{{.State.ExitCode}}", name)); code != "0" {
		t.Errorf("server exit code %s after podman stop, want 0", code)
	}
	stopped = true
	t.Logf("server image done at %v", time.Since(start).Round(time.Millisecond))

	// infra/Dockerfile.server, the alternative for people with Docker, builds
	// from the same binary without pulling anything, and its entrypoint runs it.
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	buildCtx := filepath.Join(tmp, "context")
	if err := os.MkdirAll(filepath.Join(buildCtx, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(bins, serverName), filepath.Join(buildCtx, "dist", serverName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(buildCtx, "dist", "ca-certificates.crt"), opts.CABundle, 0o644); err != nil {
		t.Fatal(err)
	}
	dref := "localhost/fluidity-server-dockerfile:" + testVersion
	pm.run(nil, "build", "--quiet", "--pull=never", "--format", "docker", "--platform", "linux/"+arch,
		"-f", filepath.Join(root, "infra", "Dockerfile.server"), "--build-arg", "VERSION="+testVersion, "-t", dref, buildCtx)
	if out := strings.TrimSpace(pm.run(nil, "run", "--rm", "--network", "none", dref, "version")); out != "fluidity-server "+testVersion {
		t.Errorf("Dockerfile image: version printed %q, want %q", out, "fluidity-server "+testVersion)
	}
	if got := strings.TrimSpace(pm.run(nil, "image", "inspect", "--format", `{{.Config.User}}|{{.HealthCheck.Test}}`, dref)); got != "65532:65532|[CMD /fluidity-server healthcheck]" {
		t.Errorf("Dockerfile image: user and health check %q", got)
	}
	t.Logf("Dockerfile image done at %v", time.Since(start).Round(time.Millisecond))
}

func writeArchive(t *testing.T, path string, idx v1.ImageIndex, ref string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteArchive(f, idx, ref, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Bounds on waiting for the container and the tunnel; generous, they only
// bound failures.
const startTimeout = 30 * time.Second

// waitLog waits for the container's log to contain want, failing early when
// the container has exited.
func waitLog(t *testing.T, pm *podman, name, want string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		logs := pm.logs(name)
		if strings.Contains(logs, want) {
			return
		}
		if st, _ := pm.try(nil, "inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(st) == "exited" {
			t.Fatalf("container exited before logging %s:\n%s", want, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("container did not log %s within %v", want, startTimeout)
}

// uidLine matches /proc/PID/status's Uid line for 65532 (real, effective,
// saved, filesystem).
var uidLine = regexp.MustCompile(`(?m)^Uid:\s+65532\s+65532\s+65532\s+65532$`)

func regexpUID65532(status string) bool { return uidLine.MatchString(status) }

// waitProxied fetches url through the agent until it answers 200: the agent
// and its tunnel take a moment to come up.
func waitProxied(t *testing.T, c *http.Client, url string, agentDone <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-agentDone:
			t.Fatalf("agent exited: %v", err)
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no request got through the tunnel in %v (last: %s)", startTimeout, last)
	return ""
}

// absoluteHTTPS sends GET https://… in absolute form to the proxy, as plain
// HTTP (no CONNECT), and returns the body of a 200 answer.
func absoluteHTTPS(t *testing.T, proxyAddr, target string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, u.Host); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through the proxy: %d %q", target, resp.StatusCode, b)
	}
	return string(b)
}
