package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

type fakeController struct {
	st    fargate.Status
	sum   fargate.Status
	err   error
	wakes int
	kills int
	// statuses counts Status calls; next, if set, is what they return in turn.
	statuses int
	next     []fargate.Status
}

func (f *fakeController) Summary(context.Context) (fargate.Status, error) { return f.sum, f.err }

type fakeReader struct {
	snap   usage.SessionsSnapshot
	err    error
	window time.Duration
}

func (f *fakeReader) ReadSessions(_ context.Context, _ time.Time, window time.Duration) (usage.SessionsSnapshot, error) {
	f.window = window
	return f.snap, f.err
}

// An agent's Kill on exit is refused, with the reason, while another agent
// may be using the server; without a reason, Kill stays unconditional. (The
// rules themselves are fargate.ExitPolicy's, tested there.)
func TestKillAgentExit(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	up := fargate.Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, LastWake: ago(time.Hour)}
	seen := func(n float64) usage.SessionsSnapshot {
		return usage.SessionsSnapshot{Max: n, Newest: ago(time.Minute), Datapoints: 3}
	}
	const alone = `{"reason":"agent_exit","own":{"sessions":2,"steady_seconds":3600}}`
	tests := []struct {
		name       string
		body       string
		sum        fargate.Status
		snap       usage.SessionsSnapshot
		readErr    error
		noMetrics  bool
		wantStatus int
		wantCode   string
		wantWhy    string
		wantKills  int
	}{
		{"unconditional, empty body", ``, up, seen(5), nil, false, 200, "", "", 1},
		{"unconditional, {}", `{}`, fargate.Status{DesiredCount: 1, LastWake: ago(time.Second)}, seen(5), nil, false, 200, "", "", 1},
		{"alone", alone, up, seen(2), nil, false, 200, "", "", 1},
		{"another agent's session", alone, up, seen(3), nil, false, 409, lifecycle.CodeInUse, "another agent is connected", 0},
		{"no datapoint", alone, up, usage.SessionsSnapshot{}, nil, false, 409, lifecycle.CodeInUse, "no Sessions datapoint", 0},
		{"no metrics reader", alone, up, seen(2), nil, true, 409, lifecycle.CodeInUse, "no Sessions datapoint", 0},
		{"own sessions not steady", `{"reason":"agent_exit","own":{"sessions":2,"steady_seconds":30}}`, up, seen(2), nil, false, 409, lifecycle.CodeInUse, "cannot be told", 0},
		{"an older agent's body", `{"reason":"agent_exit","streams":2}`, up, seen(2), nil, false, 409, lifecycle.CodeInUse, "older agent", 0},
		{"woken within the grace", alone, fargate.Status{DesiredCount: 1, LastWake: ago(3 * time.Minute)}, seen(2), nil, false, 409, lifecycle.CodeInUse, "grace", 0},
		{"already asleep", alone, fargate.Status{State: lifecycle.StateSleeping, LastWake: ago(time.Second)}, usage.SessionsSnapshot{}, nil, false, 200, "", "", 0},
		{"metrics unreadable", alone, up, usage.SessionsSnapshot{}, errors.New("throttled"), false, 500, lifecycle.CodeAWS, "", 0},
		{"unknown reason", `{"reason":"because"}`, up, usage.SessionsSnapshot{}, nil, false, 400, lifecycle.CodeBadRequest, "", 0},
		{"not json", `kill`, up, usage.SessionsSnapshot{}, nil, false, 400, lifecycle.CodeBadRequest, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &fakeController{sum: tc.sum}
			r := &fakeReader{snap: tc.snap, err: tc.readErr}
			h := &Kill{Service: c, Metrics: r, Now: func() time.Time { return now }, Log: zerolog.Nop()}
			if tc.noMetrics {
				h.Metrics = nil
			}
			req := apiRequest(t, "apigw-kill.json", "")
			req.Body = tc.body
			resp, err := h.HandleAPI(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.Unmarshal([]byte(resp.Body), &body)
			if resp.StatusCode != tc.wantStatus || c.kills != tc.wantKills || (tc.wantCode != "" && body["code"] != tc.wantCode) {
				t.Fatalf("status %d kills %d body %s; want %d kills %d code %q", resp.StatusCode, c.kills, resp.Body, tc.wantStatus, tc.wantKills, tc.wantCode)
			}
			if msg, _ := body["message"].(string); !strings.Contains(msg, tc.wantWhy) {
				t.Errorf("message %q does not say %q", msg, tc.wantWhy)
			}
			if r.window != 0 && r.window != 3*time.Minute {
				t.Errorf("read window %v, want two intervals plus the period", r.window)
			}
		})
	}
}

// The Lambdas' default METRICS_INTERVAL is the server's, or the Kill window
// would not hold the server's newest datapoint.
func TestKillDefaultsMatchServer(t *testing.T) {
	t.Parallel()
	if DefaultConfig().MetricsInterval != usage.DefaultPublisherConfig().Interval {
		t.Fatalf("the Lambdas' METRICS_INTERVAL default %v is not the server's %v", DefaultConfig().MetricsInterval, usage.DefaultPublisherConfig().Interval)
	}
	if got := DefaultConfig().ExitPolicy().Window(); got != 3*time.Minute {
		t.Fatalf("default Kill window %v, want 3m", got)
	}
}

func (f *fakeController) Wake(context.Context) (fargate.Status, error) {
	f.wakes++
	return f.st, f.err
}

func (f *fakeController) Status(context.Context) (fargate.Status, error) {
	f.statuses++
	if len(f.next) > 0 {
		f.st, f.next = f.next[0], f.next[1:]
	}
	return f.st, f.err
}

func (f *fakeController) Kill(context.Context) (fargate.Status, error) {
	f.kills++
	return fargate.Status{State: lifecycle.StateSleeping}, f.err
}

func readEvent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func apiRequest(t *testing.T, name, method string) events.APIGatewayProxyRequest {
	t.Helper()
	var req events.APIGatewayProxyRequest
	if err := json.Unmarshal(readEvent(t, name), &req); err != nil {
		t.Fatal(err)
	}
	if method != "" {
		req.HTTPMethod = method
	}
	return req
}

func TestWakeHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		st         fargate.Status
		err        error
		body       string
		next       []fargate.Status // what Status answers in turn
		wantStatus int
		wantBody   map[string]any
		wantWakes  int
		wantReads  int // Status calls
	}{
		{name: "running", st: fargate.Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, PublicIP: "203.0.113.9"},
			wantStatus: 200, wantBody: map[string]any{"state": "running", "address": "203.0.113.9:9443"}, wantWakes: 1},
		{name: "starting", st: fargate.Status{State: lifecycle.StateStarting, DesiredCount: 1},
			wantStatus: 200, wantBody: map[string]any{"state": "starting", "address": nil}, wantWakes: 1},
		{name: "GET", method: http.MethodGet, wantStatus: 405, wantBody: map[string]any{"code": lifecycle.CodeMethodNotAllowed}},
		{name: "aws failure", err: errors.New("AccessDeniedException: secret account detail"), wantStatus: 500,
			wantBody: map[string]any{"code": lifecycle.CodeAWS}, wantWakes: 1},
		{name: "missing service", err: fmt.Errorf("x: %w", fargate.ErrServiceNotFound), wantStatus: 404,
			wantBody: map[string]any{"code": lifecycle.CodeServiceNotFound}, wantWakes: 1},
		{name: "missing cluster", err: fmt.Errorf("x: %w", fargate.ErrClusterNotFound), wantStatus: 404,
			wantBody: map[string]any{"code": lifecycle.CodeClusterNotFound}, wantWakes: 1},
		{name: "probe wakes nothing", body: `{"probe":true}`, st: fargate.Status{State: lifecycle.StateSleeping},
			wantStatus: 200, wantBody: map[string]any{"state": "sleeping"}, wantReads: 1},
		{name: "probe of a running server", body: `{"probe":true}`,
			st:         fargate.Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, PublicIP: "203.0.113.9"},
			wantStatus: 200, wantBody: map[string]any{"state": "running", "address": "203.0.113.9:9443"}, wantReads: 1},
		{name: "long-poll until running", body: `{"wait_seconds":5}`, st: fargate.Status{State: lifecycle.StateStarting, DesiredCount: 1},
			next:       []fargate.Status{{State: lifecycle.StateStarting, DesiredCount: 1}, {State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, PublicIP: "203.0.113.9"}},
			wantStatus: 200, wantBody: map[string]any{"state": "running", "address": "203.0.113.9:9443"}, wantWakes: 1, wantReads: 2},
		{name: "long-poll ends on failure", body: `{"wait_seconds":5}`, st: fargate.Status{State: lifecycle.StateStarting, DesiredCount: 1},
			next:       []fargate.Status{{State: lifecycle.StateFailed, DesiredCount: 1, FailureReason: "Essential container exited"}},
			wantStatus: 200, wantBody: map[string]any{"state": "failed", "reason": "Essential container exited"}, wantWakes: 1, wantReads: 1},
		{name: "long-poll of a running server answers at once", body: `{"wait_seconds":20}`,
			st:         fargate.Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, PublicIP: "203.0.113.9"},
			wantStatus: 200, wantBody: map[string]any{"state": "running"}, wantWakes: 1},
		{name: "long-poll gives up at its wait", body: `{"wait_seconds":1}`, st: fargate.Status{State: lifecycle.StateStarting, DesiredCount: 1},
			wantStatus: 200, wantBody: map[string]any{"state": "starting"}, wantWakes: 1, wantReads: 2},
		{name: "not a wake request", body: `{"wait_seconds":"soon"}`, wantStatus: 400, wantBody: map[string]any{"code": lifecycle.CodeBadRequest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			// The long-poll's timing runs on synctest's clock.
			synctest.Test(t, func(t *testing.T) {
				c := &fakeController{st: tc.st, err: tc.err, next: tc.next}
				h := &Wake{Service: c, TunnelPort: 9443, PollEvery: 500 * time.Millisecond, Log: zerolog.New(&logs)}
				req := apiRequest(t, "apigw-wake.json", tc.method)
				if tc.body != "" {
					req.Body, req.IsBase64Encoded = tc.body, false
				}
				resp, err := h.Handle(context.Background(), req)
				if err != nil {
					t.Fatalf("Handle returned a Go error (API Gateway would answer 502): %v", err)
				}
				var body map[string]any
				if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
					t.Fatalf("body %q is not JSON", resp.Body)
				}
				if resp.StatusCode != tc.wantStatus || c.wakes != tc.wantWakes || c.statuses != tc.wantReads {
					t.Fatalf("status %d wakes %d reads %d, want %d %d %d (%s)", resp.StatusCode, c.wakes, c.statuses,
						tc.wantStatus, tc.wantWakes, tc.wantReads, resp.Body)
				}
				for k, v := range tc.wantBody {
					if body[k] != v {
						t.Errorf("body[%s] = %v, want %v (%s)", k, body[k], v, resp.Body)
					}
				}
				if strings.Contains(resp.Body, "secret account detail") {
					t.Error("AWS error detail leaked into the answer")
				}
				if tc.err != nil && !strings.Contains(logs.String(), tc.err.Error()) {
					t.Error("AWS error detail not logged")
				}
				if strings.Contains(logs.String(), "fixture-api-key") {
					t.Error("the API key was logged")
				}
			})
		})
	}
}

func TestKillHandlerEventShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		event   []byte
		wantAPI bool
		wantErr bool
		kills   int
	}{
		{name: "api gateway", event: readEvent(t, "apigw-kill.json"), wantAPI: true, kills: 1},
		{name: "scheduled", event: readEvent(t, "eventbridge-scheduled.json"), kills: 1},
		{name: "unknown", event: []byte(`{"foo":1}`), wantErr: true},
		{name: "not json", event: []byte(`nope`), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &fakeController{}
			h := &Kill{Service: c, Log: zerolog.Nop()}
			out, err := h.Handle(context.Background(), tc.event)
			if (err != nil) != tc.wantErr || c.kills != tc.kills {
				t.Fatalf("Handle = %v, %v (kills %d)", out, err, c.kills)
			}
			if tc.wantErr {
				return
			}
			resp, isAPI := out.(events.APIGatewayProxyResponse)
			if isAPI != tc.wantAPI {
				t.Fatalf("answer %T, want API response %v", out, tc.wantAPI)
			}
			if isAPI && resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})
	}

	// A scheduled kill that fails must fail the invocation so it is visible.
	c := &fakeController{err: errors.New("boom")}
	h := &Kill{Service: c, Log: zerolog.Nop()}
	if _, err := h.Handle(context.Background(), readEvent(t, "eventbridge-scheduled.json")); err == nil {
		t.Fatal("failed scheduled kill reported success")
	}
	// …while an API one answers 500 JSON.
	out, err := h.Handle(context.Background(), readEvent(t, "apigw-kill.json"))
	if resp, ok := out.(events.APIGatewayProxyResponse); err != nil || !ok || resp.StatusCode != 500 {
		t.Fatalf("failed api kill = %+v, %v; want a 500 answer", out, err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	base := map[string]string{"CLUSTER_NAME": "c", "SERVICE_NAME": "s"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		ok   bool
		want func(Config) bool
	}{
		{"defaults", base, true, func(c Config) bool {
			return c.TunnelPort == 443 && c.IdleThreshold == 15*time.Minute && c.Namespace == "Fluidity" && c.LogLevel == zerolog.InfoLevel
		}},
		{"all set", with("TUNNEL_PORT", "9443", "IDLE_THRESHOLD", "30m", "LOG_LEVEL", "DEBUG", "METRICS_NAMESPACE", "X",
			"WAKE_GRACE", "20m", "IDLE_CONFIRM_AFTER", "2m", "CRASH_BOUND", "5m", "METRICS_INTERVAL", "30s", "METRICS_PERIOD", "1s"), true, func(c Config) bool {
			p := c.Policy()
			return c.TunnelPort == 9443 && c.IdleThreshold == 30*time.Minute && c.LogLevel == zerolog.DebugLevel && c.Namespace == "X" &&
				p.WakeGrace == 20*time.Minute && p.ConfirmAfter == 2*time.Minute && p.CrashBound == 5*time.Minute && c.MetricsInterval == 30*time.Second &&
				c.ExitPolicy() == fargate.ExitPolicy{WakeGrace: 20 * time.Minute, MetricsInterval: 30 * time.Second, Period: time.Second}
		}},
		{"policy defaults", base, true, func(c Config) bool {
			return c.Policy() == fargate.DefaultIdlePolicy() && c.MetricsInterval == time.Minute
		}},
		{"bad grace", with("WAKE_GRACE", "ten"), false, nil},
		{"negative grace", with("WAKE_GRACE", "-1m"), false, nil},
		{"tiny metrics interval", with("METRICS_INTERVAL", "10ms"), false, nil},
		{"fractional metrics period", with("METRICS_PERIOD", "1500ms"), false, nil},
		{"no cluster", map[string]string{"SERVICE_NAME": "s"}, false, nil},
		{"no service", map[string]string{"CLUSTER_NAME": "c"}, false, nil},
		{"bad port", with("TUNNEL_PORT", "http"), false, nil},
		{"port out of range", with("TUNNEL_PORT", "70000"), false, nil},
		{"bad threshold", with("IDLE_THRESHOLD", "15"), false, nil},
		{"zero threshold", with("IDLE_THRESHOLD", "0s"), false, nil},
		{"bad level", with("LOG_LEVEL", "loud"), false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
			if (err == nil) != tc.ok {
				t.Fatalf("ConfigFromEnv = %+v, %v; want ok=%v", c, err, tc.ok)
			}
			if tc.ok && !tc.want(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}
