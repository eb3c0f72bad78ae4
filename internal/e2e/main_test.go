package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// Set up once by TestMain.
var (
	// Binaries built from this checkout.
	agentBin, serverBin, fluidityBin string
	// certDir holds what `fluidity certs --dir certDir --san 127.0.0.1` wrote:
	// ca.crt, server.crt/.key and agent.crt/.key.
	certDir string
	// otherCA is a second, unrelated CA; otherCADir holds its ca.crt and a
	// client certificate it issued, other-agent.crt/.key.
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
	binDir := filepath.Join(tmp, "bin")
	start := time.Now()
	agentBin = filepath.Join(binDir, "fluidity-agent")
	serverBin = filepath.Join(binDir, "fluidity-server")
	fluidityBin = filepath.Join(binDir, "fluidity")
	if err := testbin.Build(binDir, map[string]string{
		"fluidity-agent": "./daemons/agent", "fluidity-server": "./daemons/server",
	}, nil); err != nil {
		return err
	}
	// The CLI as `make run` builds it: these tests use certs, status and version,
	// never deploy, and without it the CLI links no AWS SDK.
	if err := testbin.Build(binDir, map[string]string{"fluidity": "./daemons/fluidity"}, nil, "-tags", "fluidity_nodeploy"); err != nil {
		return err
	}
	if d := time.Since(start); d > 20*time.Second {
		fmt.Fprintf(os.Stderr, "e2e: building the daemons took %v\n", d.Round(time.Second))
	}

	certDir = filepath.Join(tmp, "certs")
	certs := exec.Command(fluidityBin, "certs", "--dir", certDir, "--san", "127.0.0.1")
	certs.Env = cleanEnv()
	if out, err := certs.CombinedOutput(); err != nil {
		return fmt.Errorf("fluidity certs: %w\n%s", err, out)
	}
	for _, f := range []string{"ca.crt", "server.crt", "server.key", "agent.crt", "agent.key"} {
		if _, err := os.Stat(filepath.Join(certDir, f)); err != nil {
			return fmt.Errorf("fluidity certs did not write %s: %w", f, err)
		}
	}

	other, err := testbin.NewPKI(testbin.PKIOptions{CA: pki.CAOptions{CommonName: "Impostor CA"}, AgentName: "other-agent"})
	if err != nil {
		return err
	}
	otherCA, otherCADir = other.CA, filepath.Join(tmp, "other-ca")
	_, err = other.WriteFiles(otherCADir)
	return err
}

// cleanEnv is the test's environment without anything that would change how the
// daemons or curl behave: FLUIDITY_* settings, proxy and Kerberos variables.
func cleanEnv(extra ...string) []string { return testbin.CleanEnv(extra...) }

func certPath(name string) string { return filepath.Join(certDir, name) }
