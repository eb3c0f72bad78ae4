package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// Set up once by TestMain.
var (
	// Binaries built from this checkout.
	agentBin, serverBin, fluidityBin string
	// certDir holds what `fluidity certs --dir certDir --san 127.0.0.1` wrote:
	// ca.crt, server.crt/.key and agent.crt/.key.
	certDir string
	// otherCA is a second, unrelated CA (internal/pki); otherCADir holds its
	// ca.crt and a client certificate it issued, other-agent.crt/.key.
	otherCA    *pki.CA
	otherCADir string
	// pingTarget answers "pong" to anything; readiness checks fetch it through the proxy.
	pingTarget *httptest.Server
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "fluidity-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := setup(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		return 1
	}
	pingTarget = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("pong"))
	}))
	defer pingTarget.Close()
	return m.Run()
}

func setup(tmp string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return err
	}
	binDir := filepath.Join(tmp, "bin")
	start := time.Now()
	// Plain builds (no -race even when the tests have it): the daemons' memory
	// bounds and timings are those of the shipped binaries.
	build := exec.Command(goBin, "build", "-o", binDir+string(filepath.Separator),
		"./daemons/agent", "./daemons/server", "./daemons/fluidity")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	agentBin = filepath.Join(binDir, "fluidity-agent")
	serverBin = filepath.Join(binDir, "fluidity-server")
	fluidityBin = filepath.Join(binDir, "fluidity")
	for from, to := range map[string]string{"agent": agentBin, "server": serverBin} {
		if err := os.Rename(filepath.Join(binDir, from), to); err != nil {
			return err
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		fmt.Fprintf(os.Stderr, "e2e: building the daemons took %v\n", d.Round(time.Second))
	}

	certDir = filepath.Join(tmp, "certs")
	certs := exec.Command(fluidityBin, "certs", "--dir", certDir, "--san", "127.0.0.1")
	certs.Env = cleanEnv()
	if out, err := certs.CombinedOutput(); err != nil {
		return fmt.Errorf("fluidity certs: %v\n%s", err, out)
	}
	for _, f := range []string{"ca.crt", "server.crt", "server.key", "agent.crt", "agent.key"} {
		if _, err := os.Stat(filepath.Join(certDir, f)); err != nil {
			return fmt.Errorf("fluidity certs did not write %s: %w", f, err)
		}
	}

	otherCA, err = pki.NewCA(pki.CAOptions{CommonName: "Impostor CA"})
	if err != nil {
		return err
	}
	otherCADir = filepath.Join(tmp, "other-ca")
	if err := os.MkdirAll(otherCADir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(otherCADir, "ca.crt"), otherCA.CertPEM(), 0o600); err != nil {
		return err
	}
	client, err := otherCA.IssueClient(pki.ClientOptions{Name: "other-agent"})
	if err != nil {
		return err
	}
	return client.WriteFiles(filepath.Join(otherCADir, "other-agent.crt"), filepath.Join(otherCADir, "other-agent.key"), false)
}

func moduleRoot(goBin string) (string, error) {
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := string(bytes.TrimSpace(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// cleanEnv is the test's environment without anything that would change how the
// daemons or curl behave: FLUIDITY_* settings and proxy variables.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		uk := strings.ToUpper(k)
		if strings.HasPrefix(uk, "FLUIDITY_") || strings.HasSuffix(uk, "_PROXY") || uk == "CURL_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func certPath(name string) string { return filepath.Join(certDir, name) }
