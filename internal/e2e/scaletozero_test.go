package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/fluidity-tunnel/fluidity/internal/metrics/metricstest"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// standIn is a scripted Wake/Kill API in front of a real fluidity-server it
// starts on Wake and stops on Sleep or Kill, at a fixed address, as ECS
// would start and stop the task. It counts what the agents ask of it.
type standIn struct {
	t    *testing.T
	api  *httptest.Server
	port int // the "task's" tunnel port

	// startDelay: a Wake's task runs this long after it; neverHealthy: it
	// never does; failReason: it fails to start.
	startDelay   time.Duration
	neverHealthy bool
	failReason   string
	adminPort    int

	mu        sync.Mutex
	state     lifecycle.State
	srv       *server
	trap      net.Listener // on the port while asleep: counts dials of the old address
	trapped   atomic.Int32
	wakes     int // Wake calls, not probes
	wakeUps   int // sleeping → starting
	probes    int
	kills     []lifecycle.KillRequest
	runningAt time.Time // when a Wake first answered running, this wake-up
	changed   chan struct{}
}

func newStandIn(t *testing.T) *standIn {
	s := &standIn{t: t, port: freePort(t), adminPort: freePort(t), state: lifecycle.StateSleeping, startDelay: 500 * time.Millisecond,
		changed: make(chan struct{})}
	s.api = httptest.NewServer(s)
	t.Cleanup(s.api.Close)
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.trap != nil {
			_ = s.trap.Close()
		}
	})
	return s
}

func (s *standIn) endpoint() string { return s.api.URL + "/prod" }

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("x-api-key") != "stand-in-key" {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"message":"Forbidden"}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/prod/wake":
		var req lifecycle.WakeRequest
		_ = json.Unmarshal(body, &req)
		s.wake(w, req)
	case "/prod/kill":
		var req lifecycle.KillRequest
		_ = json.Unmarshal(body, &req)
		s.kill(w, req)
	default:
		w.WriteHeader(http.StatusForbidden)
	}
}

func (s *standIn) wake(w http.ResponseWriter, req lifecycle.WakeRequest) {
	s.mu.Lock()
	if req.Probe {
		s.probes++
	} else {
		s.wakes++
		if s.state == lifecycle.StateSleeping {
			s.state = lifecycle.StateStarting
			s.wakeUps++
			s.runningAt = time.Time{}
			go s.start()
		}
	}
	s.mu.Unlock()
	deadline := time.Now().Add(time.Duration(req.WaitSeconds) * time.Second)
	for {
		s.mu.Lock()
		res := s.resultLocked()
		changed := s.changed
		if res.State == lifecycle.StateRunning && !req.Probe && s.runningAt.IsZero() {
			s.runningAt = time.Now()
		}
		s.mu.Unlock()
		if req.Probe || res.State != lifecycle.StateStarting || !time.Now().Before(deadline) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(res)
			return
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
		}
	}
}

func (s *standIn) resultLocked() lifecycle.WakeResult {
	r := lifecycle.WakeResult{State: s.state}
	switch s.state {
	case lifecycle.StateRunning:
		r.Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		r.DesiredCount, r.RunningCount = 1, 1
	case lifecycle.StateStarting:
		r.DesiredCount, r.PendingCount = 1, 1
	case lifecycle.StateFailed:
		r.DesiredCount, r.Reason, r.FailedStarts = 1, s.failReason, 2
	}
	return r
}

func (s *standIn) setLocked(st lifecycle.State) {
	s.state = st
	close(s.changed)
	s.changed = make(chan struct{})
}

// start plays ECS starting the task: after startDelay the server runs.
func (s *standIn) start() {
	time.Sleep(s.startDelay)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.failReason != "":
		s.setLocked(lifecycle.StateFailed)
		return
	case s.neverHealthy:
		return
	}
	if s.trap != nil {
		_ = s.trap.Close()
		s.trap = nil
	}
	s.srv = startServer(s.t, serverOpts{args: []string{"--listen-port", strconv.Itoa(s.port),
		"--admin-listen", "127.0.0.1:" + strconv.Itoa(s.adminPort)}})
	s.setLocked(lifecycle.StateRunning)
}

// sleep plays the Sleep Lambda: the service goes to 0 and the task stops
// (SIGTERM, which drains the sessions); a listener then takes its port to
// count any dial of the old address.
func (s *standIn) sleep() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.setLocked(lifecycle.StateSleeping)
	s.mu.Unlock()
	if srv != nil {
		if code := srv.stop(s.t); code != 0 {
			s.t.Errorf("server exited %d", code)
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
	if err != nil {
		s.t.Fatalf("trap the old address: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.trapped.Add(1)
			_ = c.Close()
		}
	}()
	s.mu.Lock()
	s.trap = ln
	s.mu.Unlock()
}

// kill plays the Kill Lambda: an agent's Kill on exit is refused (409
// in_use) while another agent has a session on the server.
func (s *standIn) kill(w http.ResponseWriter, req lifecycle.KillRequest) {
	s.mu.Lock()
	s.kills = append(s.kills, req)
	s.mu.Unlock()
	if req.Reason == lifecycle.KillReasonAgentExit {
		// The exiting agent closed its session just before; let the server see it.
		time.Sleep(300 * time.Millisecond)
		if n := s.serverSessions(); n > 0 {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(lifecycle.ErrorBody{Code: lifecycle.CodeInUse, Message: fmt.Sprintf("%d other sessions", n)})
			return
		}
	}
	s.sleep()
	_ = json.NewEncoder(w).Encode(lifecycle.WakeResult{State: lifecycle.StateSleeping})
}

// serverSessions reads fluidity_server_sessions from the server's metrics
// (0 when they cannot be read: then nobody is connected that Kill could hurt).
func (s *standIn) serverSessions() int {
	scrape, _, err := metricstest.Fetch("http://127.0.0.1:" + strconv.Itoa(s.adminPort) + "/metrics")
	if err != nil {
		return 0
	}
	return int(scrape.Value("fluidity_server_sessions"))
}

type standInCounts struct{ wakes, wakeUps, probes, kills int }

func (s *standIn) counts() standInCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return standInCounts{s.wakes, s.wakeUps, s.probes, len(s.kills)}
}

func (s *standIn) current() lifecycle.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// lifecycleAgent starts an agent using the stand-in API, with short settings.
func lifecycleAgent(t *testing.T, s *standIn, mode lifecycle.WakeMode, extra ...string) *agent {
	t.Helper()
	args := []string{
		"--lifecycle-api-endpoint", s.endpoint(), "--lifecycle-api-key", "stand-in-key",
		"--lifecycle-wake-mode", string(mode),
		"--lifecycle-poll-interval", "200ms", "--lifecycle-wake-wait", "2s",
		"--lifecycle-hold-timeout", "30s",
		"--connect-retry-interval", "200ms", "--keepalive-interval", "500ms",
		"--sessions", "1", "--admin-listen", "",
		"--log-level", "debug",
	}
	return startAgent(t, "127.0.0.1:9", append(args, extra...)...)
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScaleToZeroCycle runs real agents against a scripted Wake/Kill API and a
// real server it starts and stops: running → sleep → no demand (no Wake, no
// dial of the old address) → HTTP, CONNECT and WebSocket held through one
// wake-up → a second agent → the first exits (Kill refused: the other is
// connected) → the second exits (Kill puts the server to sleep).
func TestScaleToZeroCycle(t *testing.T) {
	for _, mode := range []lifecycle.WakeMode{lifecycle.WakeOnStart, lifecycle.WakeOnDemand} {
		t.Run(string(mode), func(t *testing.T) { scaleToZeroCycle(t, mode) })
	}
}

func scaleToZeroCycle(t *testing.T, mode lifecycle.WakeMode) {
	s := newStandIn(t)
	plain := httpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "plain") }))
	tlsSrv, roots, _ := tlsTarget(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "secure") }))
	ws := httpTarget(t, newWSTarget())

	a := lifecycleAgent(t, s, mode)
	client := proxiedClient(t, a.proxyURL, roots)
	get := func(url, want string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v\nagent log:\n%s", url, err, a.stderr.String())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("GET %s = %d %q, want 200 %q", url, resp.StatusCode, b, want)
		}
	}

	// 1. The start: on_start wakes the server at once; on_demand waits for a request.
	if mode == lifecycle.WakeOnStart {
		waitUntil(t, startTimeout, "the server to run", func() bool { return s.current() == lifecycle.StateRunning })
		if _, ok := a.stderr.waitEntry(a.done, startTimeout, msgIs("tunnel session established")); !ok {
			t.Fatal("no session after an on_start wake")
		}
	} else {
		time.Sleep(time.Second)
		if c := s.counts(); c.wakes != 0 || c.probes != 0 {
			t.Fatalf("on_demand agent called the API with no request: %+v", c)
		}
	}
	get(plain.URL, "plain")
	if c := s.counts(); c.wakeUps != 1 {
		t.Fatalf("%d wake-ups for the start, want 1", c.wakeUps)
	}

	// 2. Sleep; then minutes of no demand (seconds here, with a 500 ms keepalive):
	// one probe, no Wake, no dial of the old address.
	before := s.counts()
	s.sleep()
	if _, ok := a.stderr.waitEntry(a.done, startTimeout, msgIs("tunnel closed: the server is not running; it is woken when a request arrives")); !ok {
		t.Fatalf("the agent did not notice the sleep:\n%s", a.stderr.String())
	}
	time.Sleep(3 * time.Second)
	after := s.counts()
	if after.wakes != before.wakes || after.probes != before.probes+1 {
		t.Fatalf("asleep without demand: %+v → %+v; want one probe and no Wake", before, after)
	}
	if n := s.trapped.Load(); n > 1 {
		t.Fatalf("the agent dialled the old address %d times after the sleep", n)
	}

	// 3. Demand: an HTTP request, a CONNECT and a WebSocket, at once, are all
	// held through one wake-up and complete.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	firstByte := make(chan time.Time, 1)
	wg.Go(func() {
		resp, err := client.Get(plain.URL)
		if err != nil {
			errs <- fmt.Errorf("held GET: %w", err)
			return
		}
		firstByte <- time.Now()
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "plain" {
			errs <- fmt.Errorf("held GET: %q", b)
		}
	})
	wg.Go(func() {
		resp, err := client.Get(tlsSrv.URL)
		if err != nil {
			errs <- fmt.Errorf("held CONNECT: %w", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "secure" {
			errs <- fmt.Errorf("held CONNECT: %q", b)
		}
	})
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ws.URL, "http")+"/echo", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			errs <- fmt.Errorf("held WebSocket: %w", err)
			return
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte("echo")); err != nil {
			errs <- err
			return
		}
		if _, msg, err := c.Read(ctx); err != nil {
			errs <- fmt.Errorf("held WebSocket echo: %w", err)
		} else if string(msg) != "echo" {
			errs <- fmt.Errorf("held WebSocket echo: %q", msg)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.Fatalf("agent log:\n%s", a.stderr.String())
	}
	if c := s.counts(); c.wakeUps != before.wakeUps+1 {
		t.Fatalf("%d wake-ups for three held requests, want one", c.wakeUps-before.wakeUps)
	}
	s.mu.Lock()
	share := (<-firstByte).Sub(s.runningAt)
	s.mu.Unlock()
	t.Logf("agent's share of the wake latency (Wake answered running → first byte): %v", share)
	if share > time.Second {
		t.Errorf("from Wake answering running to the first byte took %v, want ≤ 1 s", share)
	}

	// 4. A second agent; the first exits: its Kill is refused, the server stays.
	b := lifecycleAgent(t, s, lifecycle.WakeOnDemand)
	bClient := proxiedClient(t, b.proxyURL, roots)
	if resp, err := bClient.Get(plain.URL); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	client.CloseIdleConnections() // its keep-alive CONNECT tunnel would hold up the shutdown
	if code := a.stop(t); code != 0 {
		t.Fatalf("agent exited %d", code)
	}
	if c := s.counts(); c.kills != 1 || s.current() != lifecycle.StateRunning {
		t.Fatalf("after the first agent's exit: %+v, server %s; want one Kill, refused", c, s.current())
	}
	if !strings.Contains(a.stderr.String(), "server left running") {
		t.Errorf("the exiting agent did not say the server stays up:\n%s", a.stderr.String())
	}
	resp, err := bClient.Get(plain.URL)
	if err != nil {
		t.Fatalf("the other agent lost its tunnel when the first exited: %v", err)
	}
	resp.Body.Close()

	// 5. The last agent exits: its Kill puts the server to sleep.
	bClient.CloseIdleConnections()
	if code := b.stop(t); code != 0 {
		t.Fatalf("agent exited %d", code)
	}
	if c := s.counts(); c.kills != 2 || s.current() != lifecycle.StateSleeping {
		t.Fatalf("after the last agent's exit: %+v, server %s; want two Kills, asleep", c, s.current())
	}
	s.mu.Lock()
	for _, k := range s.kills {
		if k.Reason != lifecycle.KillReasonAgentExit {
			t.Errorf("Kill on exit without the agent_exit reason: %+v", k)
		}
		// Each agent had its one session up until it exited, which the
		// server's datapoints count: its Kill says so, for the Kill Lambda
		// to subtract.
		if k.Own == nil || k.Own.Sessions != 1 {
			t.Errorf("Kill on exit without the agent's own session: %+v", k)
		}
	}
	s.mu.Unlock()
}

// A task that never becomes healthy: the request is held for hold_timeout,
// then answered 503 with Retry-After, and the agent keeps no retry storm
// going; a task that fails to start is reported with its reason at once.
func TestScaleToZeroServerNeverUp(t *testing.T) {
	t.Run("never healthy", func(t *testing.T) {
		s := newStandIn(t)
		s.neverHealthy = true
		a := lifecycleAgent(t, s, lifecycle.WakeOnDemand, "--lifecycle-hold-timeout", "2s")
		client := proxiedClient(t, a.proxyURL, nil)
		start := time.Now()
		resp, err := client.Get(pingTarget.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held := time.Since(start)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("answer after the hold: %d Retry-After %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if !strings.Contains(strings.ToLower(string(body)), "starting") {
			t.Errorf("the answer does not say the server is starting: %q", body)
		}
		if held < 2*time.Second || held > 10*time.Second {
			t.Errorf("held %v, want about the 2 s hold_timeout", held)
		}
	})
	t.Run("failed", func(t *testing.T) {
		s := newStandIn(t)
		s.failReason = "CannotPullContainerError: image not found"
		a := lifecycleAgent(t, s, lifecycle.WakeOnDemand)
		client := proxiedClient(t, a.proxyURL, nil)
		resp, err := client.Get(pingTarget.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Fatalf("a failed server answered %d %q", resp.StatusCode, body)
		}
		if _, ok := a.stderr.waitEntry(a.done, startTimeout, func(e logEntry) bool {
			return e.str("message") == "the server failed to start; the next request tries again" && strings.Contains(e.str("error"), "CannotPullContainerError")
		}); !ok {
			t.Errorf("the agent's log does not carry the failure's reason:\n%s", a.stderr.String())
		}
	})
}
