package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/pki"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestWakeFlow runs the agent through the scale-to-zero cycle against real
// components, in both wake modes: the agent calls the HTTP wake API (an
// adapter playing API Gateway), which invokes the Wake and Kill Lambdas under
// the Runtime Interface Emulator, which scale the ECS service in moto and
// report the seeded task's address — 127.0.0.1 and the port of a Fluidity
// server running here — which the agent dials, verifying the server name.
// running → Kill (as Sleep would) → seconds without demand: the agent probes
// once and wakes nothing → a request, held through the wake-up → shutdown,
// whose Kill on exit puts the server to sleep.
func TestWakeFlow(t *testing.T) {
	endpoint := awstest.StartMoto(t)
	wakeBin := awstest.BuildLambda(t, "wake")
	killBin := awstest.BuildLambda(t, "kill")
	dir := t.TempDir()
	ca, srvCert, cliFiles := writeCerts(t, dir)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello through a woken server")
	}))
	defer target.Close()
	for _, mode := range []lifecycle.WakeMode{lifecycle.WakeOnStart, lifecycle.WakeOnDemand} {
		t.Run(string(mode), func(t *testing.T) {
			srv := &restartable{t: t, ca: ca, cert: srvCert, port: awstest.FreePort(t)}
			srv.start()
			defer srv.stop()
			f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "wake-e2e-" + strings.ReplaceAll(string(mode), "_", "-"), PublicIP: "127.0.0.1"})
			env := awstest.LambdaEnv(endpoint, "CLUSTER_NAME="+f.Cluster, "SERVICE_NAME="+f.Service,
				"TUNNEL_PORT="+strconv.Itoa(srv.port), "LOG_LEVEL=debug")
			wake := awstest.StartEmulator(t, wakeBin, env)
			// The agent's Kill on exit is refused within the grace after a Wake; the
			// flow below outlasts a one-second grace. With a one-second metrics
			// interval and period, the Kill reads the last 3 s of Sessions and
			// asks the agent's sessions to have been steady for 4 s.
			kill := awstest.StartEmulator(t, killBin, append(env, "WAKE_GRACE=1s", "METRICS_INTERVAL=1s", "METRICS_PERIOD=1s"))
			const apiKey = "test-key"
			gw := httptest.NewServer(&awstest.APIGatewayAdapter{
				Routes: map[string]string{"/wake": wake.InvokeURL, "/kill": kill.InvokeURL},
				APIKey: apiKey,
			})
			defer gw.Close()

			proxyPort := awstest.FreePort(t)
			args := []string{
				"--local-proxy-port", strconv.Itoa(proxyPort), "--admin-listen", "",
				"--cert-file", cliFiles[0], "--key-file", cliFiles[1], "--ca-cert-file", filepath.Join(dir, "ca.crt"),
				"--lifecycle-api-endpoint", gw.URL + "/prod",
				"--lifecycle-api-key", apiKey,
				"--lifecycle-wake-mode", string(mode),
				"--lifecycle-poll-interval", "200ms", "--lifecycle-wake-wait", "2s",
				"--connect-retry-interval", "200ms", "--keepalive-interval", "500ms", "--sessions", "1",
				"--log-level", "debug",
			}
			logs, stop := runAgent(t, args)
			proxyURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(proxyPort))
			hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 60 * time.Second}
			get := func() {
				t.Helper()
				var last string
				deadline := time.Now().Add(60 * time.Second)
				for time.Now().Before(deadline) {
					resp, err := hc.Get(target.URL)
					if err == nil {
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 && string(body) == "hello through a woken server" {
							return
						}
						last = fmt.Sprintf("%d %q", resp.StatusCode, body)
					} else {
						last = err.Error() // the proxy not listening yet
					}
					time.Sleep(100 * time.Millisecond)
				}
				t.Fatalf("no answer through the woken tunnel: %s\nagent log:\n%s\nwake log:\n%s", last, logs.String(), wake.Logs())
			}

			if mode == lifecycle.WakeOnStart {
				waitLog(t, logs, "tunnel session established")
			} else {
				time.Sleep(time.Second)
				if got := desired(t, endpoint, f); got != 0 {
					t.Fatalf("an on_demand agent woke the server with no request: desired %d", got)
				}
			}
			get()
			if got := desired(t, endpoint, f); got != 1 {
				t.Fatalf("desired count after wake = %d, want 1", got)
			}

			// Put to sleep (the Sleep Lambda's effect; `fluidity sleep` calls the
			// same Kill), and the task stops.
			api := &lifecycle.APIClient{Endpoint: gw.URL + "/prod", APIKey: apiKey}
			if err := api.Kill(context.Background()); err != nil {
				t.Fatal(err)
			}
			srv.stop()
			waitLog(t, logs, "tunnel closed: the server is not running; it is woken when a request arrives")
			time.Sleep(2 * time.Second) // no demand
			if got := desired(t, endpoint, f); got != 0 {
				t.Fatalf("the agent woke the sleeping server by itself: desired %d\nagent log:\n%s", got, logs.String())
			}
			if n := strings.Count(logs.String(), "waiting for the server to start"); n > 1 && mode == lifecycle.WakeOnDemand {
				t.Fatalf("wake-ups while asleep:\n%s", logs.String())
			}

			// A request: held through the wake-up (the task "starts": the server
			// is back on its port), then answered.
			srv.start()
			get()
			if got := desired(t, endpoint, f); got != 1 {
				t.Fatalf("desired count after the request = %d, want 1", got)
			}

			// Past the Kill Lambda's one-second grace after the last Wake (a
			// wall-clock rule of a separate process), with the agent's one
			// session steady for longer than the Lambda asks, the agent's Kill
			// on exit stops the server, although the server's datapoints count
			// that session: the agent reports it, and the Lambda sees no one else.
			stopPublishing := publishSessions(t, endpoint, f.Service, 1)
			time.Sleep(4500 * time.Millisecond)
			hc.CloseIdleConnections()
			stop()
			stopPublishing()
			if got := desired(t, endpoint, f); got != 0 {
				t.Fatalf("desired count after the agent's shutdown = %d, want 0 (kill_on_exit)\nagent log:\n%s\nkill log:\n%s", got, logs.String(), kill.Logs())
			}
		})
	}
}

// restartable is a tunnel server on a fixed port that can stop and start
// again, as a Fargate task at one address would.
type restartable struct {
	t    *testing.T
	ca   *pki.CA
	cert *pki.KeyPair
	port int

	srv  *tunnel.Server
	done chan struct{}
}

func (r *restartable) start() {
	r.t.Helper()
	r.srv = newTestServer(r.t, r.ca, r.cert)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(r.port))
	if err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func(s *tunnel.Server, done chan struct{}) { defer close(done); _ = s.Serve(context.Background(), ln) }(r.srv, r.done)
}

func (r *restartable) stop() {
	if r.srv != nil {
		_ = r.srv.Close()
		<-r.done
		r.srv = nil
	}
}

func waitLog(t *testing.T, logs *syncBuffer, msg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("agent never logged %q:\n%s", msg, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishSessions publishes, every half second until stopped, what the
// server's publisher would while n agent sessions stay up: the real
// usage.Publisher over a session count.
func publishSessions(t *testing.T, endpoint, service string, n int) (stop func()) {
	t.Helper()
	src := sessionStats{SessionCounter: &usage.SessionCounter{}}
	for range n {
		src.Up()
	}
	cfg := usage.DefaultPublisherConfig()
	cfg.Service, cfg.Interval = service, 500*time.Millisecond
	pub, err := usage.NewPublisherFromConfig(awstest.AWSConfig(endpoint), cfg, src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pub.Run(ctx) }()
	return func() { cancel(); <-done }
}

// sessionStats is a server's stats source with a session count.
type sessionStats struct {
	idleStats
	*usage.SessionCounter
}

type idleStats struct{}

func (idleStats) ActiveStreams() int64    { return 0 }
func (idleStats) LastActivity() time.Time { return time.Time{} }

func desired(t *testing.T, endpoint string, f *awstest.Fargate) int32 {
	t.Helper()
	out, err := ecs.NewFromConfig(awstest.AWSConfig(endpoint)).DescribeServices(context.Background(),
		&ecs.DescribeServicesInput{Cluster: aws.String(f.Cluster), Services: []string{f.Service}})
	if err != nil || len(out.Services) != 1 {
		t.Fatalf("describe service: %v", err)
	}
	return out.Services[0].DesiredCount
}

// writeCerts writes what `fluidity certs --dir dir` would into dir and
// returns the CA, the server's certificate, and the agent's cert and key paths.
func writeCerts(t *testing.T, dir string) (*pki.CA, *pki.KeyPair, [2]string) {
	t.Helper()
	certs, files := testbin.MintPKI(t, dir, testbin.PKIOptions{})
	return certs.CA, certs.Server, [2]string{files.AgentCert, files.AgentKey}
}

// startServer runs an in-process Fluidity server on a loopback port.
func startServer(t *testing.T, ca *pki.CA, srv *pki.KeyPair) int {
	t.Helper()
	s := newTestServer(t, ca, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(context.Background(), ln) }()
	t.Cleanup(func() { _ = s.Close(); <-done }) // runs before newTestServer's Close

	return ln.Addr().(*net.TCPAddr).Port
}

// newTestServer is a tunnel server for srv's certificate, allowing loopback
// targets, closed at the test's end.
func newTestServer(t *testing.T, ca *pki.CA, srv *pki.KeyPair) *tunnel.Server {
	t.Helper()
	cert, err := srv.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := tunnel.DefaultServerConfig()
	cfg.TLSConfig = tunnel.NewServerTLSConfig(cert, ca.CertPool())
	cfg.Egress.AllowCIDRs = []string{"127.0.0.0/8"}
	s, err := tunnel.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// runAgent runs the agent in-process with args until stop (or the test's end),
// and fails the test if it exits with an error. logs collects its log.
func runAgent(t *testing.T, args []string) (logs *syncBuffer, stop func()) {
	t.Helper()
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, args, nil, io.Discard, logs) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if code := <-exited; code != 0 {
				t.Errorf("agent exited %d; log:\n%s", code, logs.String())
			}
		})
	}
	t.Cleanup(stop)
	return logs, stop
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
