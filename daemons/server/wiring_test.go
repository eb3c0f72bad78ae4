package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// pemServer makes a CA and a server certificate, and returns the environment
// that starts the server with them as PEM text (as the Fargate task does) on a
// free loopback port; callers append their own settings and issue clients
// from ca.
func pemServer(t *testing.T) (*pki.CA, []string, int) {
	t.Helper()
	certs, _ := testbin.MintPKI(t, "", testbin.PKIOptions{})
	port := awstest.FreePort(t)
	return certs.CA, append(certs.ServerEnv(),
		"FLUIDITY_SERVER_LISTEN_ADDR=127.0.0.1",
		"FLUIDITY_SERVER_LISTEN_PORT="+strconv.Itoa(port),
	), port
}

// runServer runs the server in-process with env until the returned stop,
// which fails the test unless it exited 0. stderr (nil: discarded) gets its log.
func runServer(t *testing.T, env []string, stderr io.Writer) (stop func()) {
	t.Helper()
	if stderr == nil {
		stderr = new(discard)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, env, new(discard), stderr) }()
	return func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("server exited %d", code)
		}
	}
}

// agentClient is a tunnel client with a fresh agent certificate of ca, for
// the server at 127.0.0.1:port; sessions 0 means the default. Close it
// before the server stops.
func agentClient(t *testing.T, ca *pki.CA, port, sessions int) *tunnel.Client {
	t.Helper()
	kp, err := ca.IssueClient(pki.ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := kp.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := tunnel.NewClientTLSConfig(cert, ca.CertPool(), tunnel.DefaultServerName)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ccfg := tunnel.DefaultClientConfig()
	ccfg.Sessions = sessions
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) { return tunnel.DialTLS(ctx, addr, clientTLS) }
	client, err := tunnel.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// TestServeFromPEMEnvironment starts the server with its certificates passed as
// environment variables (as the Fargate task does) and pushes a request through it.
func TestServeFromPEMEnvironment(t *testing.T) {
	ca, env, port := pemServer(t)
	env = append(env,
		"FLUIDITY_SERVER_ALLOW_CIDRS=127.0.0.0/8",
	)
	defer runServer(t, env, nil)()

	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer target.Close()
	client := agentClient(t, ca, port, 0)
	defer client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("GET", target.URL, nil)
		resp, err := client.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := run(context.Background(), []string{"healthcheck", "--listen-port", strconv.Itoa(port)}, nil, new(discard), new(discard)); code != 0 {
		t.Errorf("healthcheck on a live server exited %d", code)
	}
}

// TestServeFromPEMEnvironmentDeniesClients: with certificates in the environment,
// deny_clients refuses a client by its serial written as openssl prints it, lets
// others in, and logs the doubtful entry at start.
func TestServeFromPEMEnvironmentDeniesClients(t *testing.T) {
	ca, env, port := pemServer(t)
	lost, _ := ca.IssueClient(pki.ClientOptions{Name: "lost-laptop"})
	kept, _ := ca.IssueClient(pki.ClientOptions{Name: "agent"})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	env = append(env,
		"FLUIDITY_SERVER_DENY_CLIENTS=CN=someone,serial=00"+strings.ToUpper(lost.Cert.SerialNumber.Text(16)),
	)
	logs := new(lockedBuffer)
	defer runServer(t, env, logs)()

	dial := func(kp *pki.KeyPair) error {
		cert, _ := kp.TLSCertificate()
		conn, err := tunnel.DialTLS(context.Background(), addr, tunnel.NewClientTLSConfig(cert, ca.CertPool(), tunnel.DefaultServerName))
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3: the server's verdict on the client certificate arrives after
		// the client's handshake. An accepted client hears nothing until it
		// speaks, so a short read deadline tells the two apart.
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := dial(kept)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client not on the deny list: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := dial(lost); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("denied client: %v, want a bad certificate alert", err)
	}
	if !strings.Contains(logs.String(), `"entry":"CN=someone"`) {
		t.Errorf("no warning naming the doubtful entry in the log:\n%s", logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestServerTLSRefusesBadPEM(t *testing.T) {
	c := validServerConfig()
	c.CertFile, c.CertPEM = "", "x"
	c.KeyFile, c.KeyPEM = "", "x"
	c.CACertFile, c.CACertPEM = "", "x"
	if _, _, err := serverTLS(c, zerolog.Nop()); err == nil {
		t.Fatal("garbage PEM accepted")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestMetricsIdleToActiveMoto: with emit_metrics on, the server publishes at
// once when a request arrives after a quiet metrics interval, not at the next
// tick, so the Sleep policy never acts on an idle datapoint older than the
// first request after a quiet spell; it counts the agent's session too.
func TestMetricsIdleToActiveMoto(t *testing.T) {
	endpoint := awstest.StartMoto(t)
	for _, kv := range awstest.LambdaEnv(endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ca, env, port := pemServer(t)
	// The request must be answered and its datapoint published within about
	// interval minus the server's start-up after the quiet spell: on a loaded
	// machine (moto's answers alone took up to 3 s) 4 s was too tight.
	const interval = 6 * time.Second
	env = append(env,
		"FLUIDITY_SERVER_ALLOW_CIDRS=127.0.0.0/8",
		"FLUIDITY_SERVER_EMIT_METRICS=true",
		"FLUIDITY_SERVER_METRICS_SERVICE=svc-wiring",
		"FLUIDITY_SERVER_METRICS_INTERVAL="+interval.String(),
	)
	started := time.Now()
	defer runServer(t, env, nil)()
	mcfg := usage.DefaultMetricsConfig()
	mcfg.Service = "svc-wiring"
	reader, err := usage.NewMetricsReaderFromConfig(awstest.AWSConfig(endpoint), mcfg)
	if err != nil {
		t.Fatal(err)
	}
	// Quiet for one interval, so the tick's datapoint says "idle for an interval".
	time.Sleep(interval + interval/10)

	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer target.Close()
	client := agentClient(t, ca, port, 2)
	defer client.Close()
	// The client brings its second session up only once the first is, in the
	// background: a request sent at once reaches the server, which publishes
	// on it, before the second session does (seen as Max 1 under load).
	if err := client.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for wait := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		up := 0
		for _, s := range client.Sessions() {
			if s.Up {
				up++
			}
		}
		if up == 2 {
			break
		}
		if time.Since(wait) > 5*time.Second {
			t.Fatalf("%d of the client's 2 sessions up after 5 s", up)
		}
	}
	req, _ := http.NewRequest("GET", target.URL, nil)
	resp, err := client.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	requested := time.Now()
	// The next tick is at 2 intervals after start; the datapoint must come before it.
	deadline := started.Add(2*interval - 300*time.Millisecond)
	for {
		snap, err := reader.Read(context.Background(), time.Now(), 15*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !snap.LastActivity.Before(requested.Add(-2 * time.Second).Truncate(time.Second)) {
			t.Logf("activity published %v after the request", time.Since(requested).Round(time.Millisecond))
			// The same publication counts the agent's two sessions, which
			// the Kill on exit is decided on.
			seen, err := reader.ReadSessions(context.Background(), time.Now(), 15*time.Minute)
			if err != nil || seen.Max != 2 {
				t.Fatalf("Sessions datapoints %+v, %v; want at most 2 sessions (the one agent's)", seen, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no datapoint with the request's activity %v after it (newest: last activity %v); the server waited for the tick",
				time.Since(requested).Round(time.Millisecond), snap.LastActivity)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
