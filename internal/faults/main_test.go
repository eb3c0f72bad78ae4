package faults

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// Set up once by TestMain.
var (
	// serverBin is fluidity-server built from this checkout (plain build, no -race:
	// the crash test measures the shipped binary's behaviour).
	serverBin string
	// certDir holds ca.crt, server.crt and server.key for serverBin.
	certDir string
	// creds are the same CA's certificates for the in-process server and agent.
	creds *testCreds
)

// testCreds is one private CA with a server and a client certificate.
type testCreds struct {
	server tls.Certificate
	client tls.Certificate
	pool   *x509.CertPool
}

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "fluidity-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	if err := setup(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		fmt.Fprintln(os.Stderr, "faults: setup:", err)
		os.Exit(1)
	}
	// goleak.VerifyTestMain calls os.Exit; remove the temporary directory first.
	goleak.VerifyTestMain(exitHook{m, tmp},
		// Idle keep-alive connections of net/http clients and transports park here
		// until they are closed; the tests close them, but the readers exit a moment later.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// toxiproxy v2.5.0 leaks a link's toxic goroutines when the link's destination
		// fails while a toxic holds data (LatencyToxic.Pipe blocks for ever sending to
		// an output nobody reads any more; the link's reader then blocks behind it).
		// They belong to the test tool, not to Fluidity.
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	)
}

// exitHook runs the tests, then removes the temporary directory.
type exitHook struct {
	m   *testing.M
	tmp string
}

func (h exitHook) Run() int {
	code := h.m.Run()
	_ = os.RemoveAll(h.tmp)
	return code
}

func setup(tmp string) error {
	p, err := testbin.NewPKI(testbin.PKIOptions{AgentName: "faults-agent"})
	if err != nil {
		return err
	}
	creds = &testCreds{server: p.ServerTLS, client: p.AgentTLS, pool: p.Pool()}
	certDir = filepath.Join(tmp, "certs")
	if _, err := p.WriteFiles(certDir); err != nil {
		return err
	}

	serverBin = filepath.Join(tmp, "fluidity-server")
	start := time.Now()
	if err := testbin.Build(tmp, map[string]string{"fluidity-server": "./daemons/server"}, nil); err != nil {
		return err
	}
	if d := time.Since(start); d > 20*time.Second {
		fmt.Fprintf(os.Stderr, "faults: building fluidity-server took %v\n", d.Round(time.Second))
	}
	return nil
}
