package lambdas_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

func readEvent(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ecsClient(endpoint string) *ecs.Client { return ecs.NewFromConfig(awstest.AWSConfig(endpoint)) }

func desiredCount(t *testing.T, endpoint, cluster, service string) int32 {
	t.Helper()
	out, err := ecsClient(endpoint).DescribeServices(context.Background(), &ecs.DescribeServicesInput{
		Cluster: aws.String(cluster), Services: []string{service},
	})
	if err != nil || len(out.Services) != 1 {
		t.Fatalf("describe service %s/%s: %v %+v", cluster, service, err, out)
	}
	return out.Services[0].DesiredCount
}

func lambdaEnv(endpoint string, f *awstest.Fargate, extra ...string) []string {
	return awstest.LambdaEnv(endpoint, append([]string{
		"CLUSTER_NAME=" + f.Cluster, "SERVICE_NAME=" + f.Service, "TUNNEL_PORT=8443", "LOG_LEVEL=debug",
	}, extra...)...)
}

func invokeAPI(t *testing.T, rie *awstest.RIE, event []byte) (events.APIGatewayProxyResponse, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := rie.Invoke(ctx, event)
	if err != nil {
		t.Fatalf("invoke: %v\nlogs:\n%s", err, rie.Logs())
	}
	var resp events.APIGatewayProxyResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("decode proxy response %s: %v", out, err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		t.Fatalf("body is not JSON: %q", resp.Body)
	}
	if ct := resp.Headers["Content-Type"]; ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return resp, body
}

func withMethod(t *testing.T, event []byte, method string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(event, &m); err != nil {
		t.Fatal(err)
	}
	m["httpMethod"] = method
	b, _ := json.Marshal(m)
	return b
}

// TestLambdas runs each Lambda binary under the Runtime Interface Emulator
// against moto with real event payloads.
func TestLambdas(t *testing.T) {
	endpoint := awstest.StartMoto(t)
	// Builds are sequential on purpose: the go build cache makes the second
	// and third nearly free, and parallel links would just fight for 2 cores.
	wakeBin := awstest.BuildLambda(t, "wake")
	sleepBin := awstest.BuildLambda(t, "sleep")
	killBin := awstest.BuildLambda(t, "kill")

	t.Run("wake", func(t *testing.T) {
		t.Parallel()
		f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-wake", PublicIP: "198.51.100.20"})
		rie := awstest.StartEmulator(t, wakeBin, lambdaEnv(endpoint, f))
		ev := readEvent(t, "apigw-wake.json")

		resp, body := invokeAPI(t, rie, ev)
		if resp.StatusCode != 200 || body["state"] != "starting" || body["address"] != nil {
			t.Fatalf("first wake = %d %v, want 200 starting without address", resp.StatusCode, body)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
			t.Fatalf("desired count after wake = %d, want 1", got)
		}
		// Polling again is idempotent and, with the task up, reports its address.
		for i := 0; i < 2; i++ {
			resp, body = invokeAPI(t, rie, ev)
			if resp.StatusCode != 200 || body["state"] != "running" || body["address"] != "198.51.100.20:8443" {
				t.Fatalf("wake poll %d = %d %v, want running at 198.51.100.20:8443", i, resp.StatusCode, body)
			}
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
			t.Fatalf("desired count after repeated wake = %d, want 1", got)
		}

		resp, body = invokeAPI(t, rie, withMethod(t, ev, http.MethodGet))
		if resp.StatusCode != http.StatusMethodNotAllowed || body["code"] != lifecycle.CodeMethodNotAllowed || resp.Headers["Allow"] != "POST" {
			t.Fatalf("GET /wake = %d %v %v, want 405 method_not_allowed with Allow: POST", resp.StatusCode, body, resp.Headers)
		}
	})

	// A misconfigured stack is a 404 the agent does not retry, for Wake and
	// Kill alike, whether the cluster or only the service is missing.
	t.Run("missing-service-or-cluster", func(t *testing.T) {
		t.Parallel()
		awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-present", Service: "svc-present", NoTask: true})
		for _, tc := range []struct {
			name, cluster, service, code string
		}{
			{"no-cluster", "nowhere", "nothing", lifecycle.CodeClusterNotFound},
			{"no-service", "c-present", "nothing", lifecycle.CodeServiceNotFound},
		} {
			f := &awstest.Fargate{Cluster: tc.cluster, Service: tc.service}
			for _, fn := range []struct {
				bin, event string
			}{{wakeBin, "apigw-wake.json"}, {killBin, "apigw-kill.json"}} {
				rie := awstest.StartEmulator(t, fn.bin, lambdaEnv(endpoint, f))
				resp, body := invokeAPI(t, rie, readEvent(t, fn.event))
				if resp.StatusCode != http.StatusNotFound || body["code"] != tc.code || body["message"] == nil {
					t.Errorf("%s %s = %d %v, want 404 %s with a message\n%s", tc.name, fn.event, resp.StatusCode, body, tc.code, rie.Logs())
				}
				var ae *lifecycle.APIError
				err := lifecycle.APIError{StatusCode: resp.StatusCode, Code: body["code"].(string)}
				if ae = &err; lifecycle.IsTemporary(ae) || !errors.Is(ae, lifecycle.ErrNotFound) {
					t.Errorf("%s: the client would retry %v", tc.name, ae)
				}
			}
		}
	})

	t.Run("kill", func(t *testing.T) {
		t.Parallel()
		f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-kill", DesiredCount: 1})
		rie := awstest.StartEmulator(t, killBin, lambdaEnv(endpoint, f))
		api := readEvent(t, "apigw-kill.json")

		resp, body := invokeAPI(t, rie, withMethod(t, api, http.MethodDelete))
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("DELETE /kill = %d %v, want 405", resp.StatusCode, body)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
			t.Fatalf("a rejected kill changed the desired count to %d", got)
		}
		resp, body = invokeAPI(t, rie, api)
		if resp.StatusCode != 200 || body["state"] != "sleeping" {
			t.Fatalf("POST /kill = %d %v, want 200 sleeping", resp.StatusCode, body)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
			t.Fatalf("desired count after kill = %d, want 0", got)
		}

		// The nightly schedule: wake it up by hand, then the scheduled event.
		if _, err := ecsClient(endpoint).UpdateService(context.Background(), &ecs.UpdateServiceInput{
			Cluster: aws.String(f.Cluster), Service: aws.String(f.Service), DesiredCount: aws.Int32(1),
		}); err != nil {
			t.Fatal(err)
		}
		out, err := rie.Invoke(context.Background(), readEvent(t, "eventbridge-scheduled.json"))
		if err != nil {
			t.Fatalf("scheduled kill: %v\n%s", err, rie.Logs())
		}
		var res lifecycle.WakeResult
		if err := json.Unmarshal(out, &res); err != nil || res.State != lifecycle.StateSleeping {
			t.Fatalf("scheduled kill result %s (%v), want state sleeping", out, err)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
			t.Fatalf("desired count after scheduled kill = %d, want 0", got)
		}

		if _, err := rie.Invoke(context.Background(), []byte(`{"hello":"world"}`)); err == nil {
			t.Fatal("an unrecognised event did not fail the invocation")
		}
	})

	// Sleep: the server's Publisher writes to moto, the Sleep Lambda reads
	// the metrics back and decides.
	sleepCases := []struct {
		name     string
		active   int64
		lastAgo  time.Duration
		publish  bool
		wantIdle bool
	}{
		{name: "busy-connections", active: 2, lastAgo: time.Hour, publish: true, wantIdle: false},
		{name: "recent-activity", active: 0, lastAgo: time.Minute, publish: true, wantIdle: false},
		{name: "idle", active: 0, lastAgo: time.Hour, publish: true, wantIdle: true},
		// moto gives tasks no start time, so uptime is unknown: not idle.
		{name: "no-metrics-yet", publish: false, wantIdle: false},
	}
	for _, tc := range sleepCases {
		t.Run("sleep-"+tc.name, func(t *testing.T) {
			t.Parallel()
			f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-sleep-" + tc.name, Service: "svc-" + tc.name, DesiredCount: 1})
			if tc.publish {
				pcfg := usage.DefaultPublisherConfig()
				pcfg.Service = f.Service
				pub, err := usage.NewPublisherFromConfig(awstest.AWSConfig(endpoint), pcfg,
					stats{active: tc.active, last: time.Now().Add(-tc.lastAgo)}, zerolog.Nop())
				if err != nil {
					t.Fatal(err)
				}
				if err := pub.Publish(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			rie := awstest.StartEmulator(t, sleepBin, lambdaEnv(endpoint, f, "IDLE_THRESHOLD=15m", "IDLE_CONFIRM_AFTER=1s"))
			// Two runs: an idle server is only put to sleep when the second
			// check (at least IDLE_CONFIRM_AFTER later) confirms the first.
			for run := 1; run <= 2; run++ {
				if run == 2 {
					time.Sleep(1100 * time.Millisecond)
				}
				res := invokeSleep(t, rie)
				if res.Idle != tc.wantIdle || res.ScaledToZero != (tc.wantIdle && run == 2) || res.Reason == "" {
					t.Fatalf("sleep run %d: %+v, want idle=%v with a reason", run, res, tc.wantIdle)
				}
				want := int32(1)
				if tc.wantIdle && run == 2 {
					want = 0
				}
				if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != want {
					t.Fatalf("run %d: desired count = %d, want %d (reason %q)", run, got, want, res.Reason)
				}
			}
			if !strings.Contains(rie.Logs(), `"sleep decision"`) {
				t.Errorf("decision not logged:\n%s", rie.Logs())
			}
		})
	}

	// An agent's Kill on exit through the real Kill Lambda on moto: refused
	// (409 in_use) while the server has published no Sessions datapoint yet,
	// while its datapoint counts sessions beyond the agent's own, or while a
	// Wake is within the grace; allowed when alone. The Kill role may not
	// list tasks, so only DescribeServices, the metrics and UpdateService
	// are used.
	t.Run("kill-agent-exit", func(t *testing.T) {
		t.Parallel()
		f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-exit", Service: "svc-exit", DesiredCount: 1})
		kill := awstest.StartEmulator(t, killBin, lambdaEnv(endpoint, f))
		withBody := func(body string) []byte {
			var m map[string]any
			if err := json.Unmarshal(readEvent(t, "apigw-kill.json"), &m); err != nil {
				t.Fatal(err)
			}
			m["body"] = body
			b, _ := json.Marshal(m)
			return b
		}
		exit := func(sessions int) []byte {
			return withBody(fmt.Sprintf(`{"reason":"agent_exit","own":{"sessions":%d,"steady_seconds":3600}}`, sessions))
		}
		refused := func(resp events.APIGatewayProxyResponse, body map[string]any, why string) {
			t.Helper()
			if msg, _ := body["message"].(string); resp.StatusCode != http.StatusConflict || body["code"] != lifecycle.CodeInUse || !strings.Contains(msg, why) {
				t.Fatalf("kill on exit = %d %v, want 409 in_use saying %q\n%s", resp.StatusCode, body, why, kill.Logs())
			}
			if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
				t.Fatalf("a refused kill changed the desired count to %d", got)
			}
		}
		resp, body := invokeAPI(t, kill, exit(1))
		refused(resp, body, "no Sessions datapoint")

		// The server saw three sessions in its last interval.
		src := sessionStats{SessionCounter: &usage.SessionCounter{}}
		for range 3 {
			src.Up()
		}
		pcfg := usage.DefaultPublisherConfig()
		pcfg.Service = f.Service
		pub, err := usage.NewPublisherFromConfig(awstest.AWSConfig(endpoint), pcfg, src, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
		resp, body = invokeAPI(t, kill, exit(1))
		refused(resp, body, "another agent is connected")
		resp, body = invokeAPI(t, kill, exit(3))
		if resp.StatusCode != 200 || body["state"] != "sleeping" {
			t.Fatalf("kill on exit of the only agent = %d %v, want 200 sleeping\n%s", resp.StatusCode, body, kill.Logs())
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
			t.Fatalf("desired count after the only agent's kill = %d, want 0", got)
		}

		// Woken again by another agent a moment ago: refused, whatever the
		// metrics; an unconditional Kill still stops it.
		wake := awstest.StartEmulator(t, wakeBin, lambdaEnv(endpoint, f))
		if resp, body := invokeAPI(t, wake, readEvent(t, "apigw-wake.json")); resp.StatusCode != 200 {
			t.Fatalf("wake = %d %v", resp.StatusCode, body)
		}
		resp, body = invokeAPI(t, kill, exit(3))
		refused(resp, body, "grace")
		gw := httptest.NewServer(&awstest.APIGatewayAdapter{Routes: map[string]string{"/kill": kill.InvokeURL}, APIKey: "k", Stage: "prod"})
		t.Cleanup(gw.Close)
		c := &lifecycle.APIClient{Endpoint: gw.URL + "/prod", APIKey: "k"}
		if _, err := c.KillOnExit(context.Background(), lifecycle.AgentUse{Sessions: 3, SteadySeconds: 3600}); !errors.Is(err, lifecycle.ErrInUse) {
			t.Fatalf("KillOnExit through the gateway = %v, want ErrInUse", err)
		}
		if err := c.Kill(context.Background()); err != nil {
			t.Fatalf("unconditional Kill: %v", err)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
			t.Fatalf("desired count after an unconditional kill = %d, want 0", got)
		}
	})

	t.Run("kill-on-exit-two-agents", func(t *testing.T) {
		t.Parallel()
		killOnExitTwoAgents(t, endpoint, wakeBin, killBin)
	})

	// Issue 10's race through the real Lambdas: the server's newest datapoint,
	// published a minute before the Wake, says idle; Sleep runs right after
	// the Wake and must leave it up, on both of two checks. Past the grace
	// (2 s here), two checks put it to sleep.
	t.Run("wake-sleep-race", func(t *testing.T) {
		t.Parallel()
		f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-race", Service: "svc-race", DesiredCount: 1})
		cw := usage.NewCloudWatchClient(awstest.AWSConfig(endpoint))
		dims := []cwtypes.Dimension{{Name: aws.String(usage.DimensionService), Value: aws.String(f.Service)}}
		at := time.Now().Add(-time.Minute)
		if _, err := cw.PutMetricData(context.Background(), &cloudwatch.PutMetricDataInput{
			Namespace: aws.String(usage.DefaultNamespace),
			MetricData: []cwtypes.MetricDatum{
				{MetricName: aws.String(usage.MetricActiveConnections), Dimensions: dims, Timestamp: aws.Time(at), Value: aws.Float64(0)},
				{MetricName: aws.String(usage.MetricLastActivity), Dimensions: dims, Timestamp: aws.Time(at), Value: aws.Float64(float64(at.Add(-time.Hour).Unix()))},
			},
		}); err != nil {
			t.Fatal(err)
		}
		wake := awstest.StartEmulator(t, wakeBin, lambdaEnv(endpoint, f))
		sleepDefault := awstest.StartEmulator(t, sleepBin, lambdaEnv(endpoint, f, "IDLE_CONFIRM_AFTER=1s"))
		if resp, body := invokeAPI(t, wake, readEvent(t, "apigw-wake.json")); resp.StatusCode != 200 || body["state"] != "running" {
			t.Fatalf("wake = %d %v", resp.StatusCode, body)
		}
		for run := 1; run <= 2; run++ {
			time.Sleep(1100 * time.Millisecond)
			res := invokeSleep(t, sleepDefault)
			if res.Idle || res.ScaledToZero || !strings.Contains(res.Reason, "grace") {
				t.Fatalf("sleep run %d seconds after a wake: %+v, want not idle (grace)", run, res)
			}
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 1 {
			t.Fatalf("desired count %d seconds after a Wake, want 1", got)
		}
		shortGrace := awstest.StartEmulator(t, sleepBin, lambdaEnv(endpoint, f, "IDLE_CONFIRM_AFTER=1s", "WAKE_GRACE=2s"))
		time.Sleep(time.Second) // past the 2 s grace
		if res := invokeSleep(t, shortGrace); !res.Idle || res.ScaledToZero {
			t.Fatalf("first check past the grace: %+v, want idle, not yet scaled", res)
		}
		time.Sleep(1100 * time.Millisecond)
		if res := invokeSleep(t, shortGrace); !res.ScaledToZero {
			t.Fatalf("second check: %+v, want scaled to zero", res)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
			t.Fatalf("desired count after two idle checks = %d, want 0", got)
		}
	})

	// Tasks that keep crashing: Wake answers failed with the reason, and the
	// agent's client stops waiting with that reason.
	t.Run("wake-failed", func(t *testing.T) {
		t.Parallel()
		f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-failed", Service: "svc-failed", NoTask: true})
		wake := awstest.StartEmulator(t, wakeBin, lambdaEnv(endpoint, f))
		ev := readEvent(t, "apigw-wake.json")
		if resp, body := invokeAPI(t, wake, ev); resp.StatusCode != 200 || body["state"] != "starting" {
			t.Fatalf("wake = %d %v", resp.StatusCode, body)
		}
		for i := 0; i < 2; i++ {
			arn, _ := f.StartTask(t, "")
			if _, err := ecsClient(endpoint).StopTask(context.Background(), &ecs.StopTaskInput{
				Cluster: aws.String(f.Cluster), Task: aws.String(arn), Reason: aws.String("Essential container in task exited"),
			}); err != nil {
				t.Fatal(err)
			}
		}
		resp, body := invokeAPI(t, wake, ev)
		if resp.StatusCode != 200 || body["state"] != "failed" || body["reason"] != "Essential container in task exited" || body["failed_starts"] != 2.0 {
			t.Fatalf("wake after two crashes = %d %v, want 200 failed with the reason", resp.StatusCode, body)
		}
		gw := httptest.NewServer(&awstest.APIGatewayAdapter{Routes: map[string]string{"/wake": wake.InvokeURL}, APIKey: "k", Stage: "prod"})
		t.Cleanup(gw.Close)
		c := &lifecycle.APIClient{Endpoint: gw.URL + "/prod", APIKey: "k"}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.WaitRunning(ctx, 50*time.Millisecond, nil); !errors.Is(err, lifecycle.ErrServerFailed) || !strings.Contains(err.Error(), "Essential container") {
			t.Fatalf("WaitRunning = %v, want ErrServerFailed with the reason", err)
		}
	})

	// The agent's client through the whole chain: HTTP → API Gateway
	// adapter → Wake/Kill Lambdas under the emulator → moto.
	t.Run("apiclient-chain", func(t *testing.T) {
		t.Parallel()
		f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "c-chain", NoTask: true})
		wake := awstest.StartEmulator(t, wakeBin, lambdaEnv(endpoint, f))
		kill := awstest.StartEmulator(t, killBin, lambdaEnv(endpoint, f))
		gw := httptest.NewServer(&awstest.APIGatewayAdapter{
			Routes: map[string]string{"/wake": wake.InvokeURL, "/kill": kill.InvokeURL},
			APIKey: "k-123", Stage: "prod",
		})
		t.Cleanup(gw.Close)

		bad := &lifecycle.APIClient{Endpoint: gw.URL + "/prod", APIKey: "wrong"}
		if _, err := bad.Wake(context.Background()); !errors.Is(err, lifecycle.ErrUnauthorized) {
			t.Fatalf("wake with a wrong key: %v, want ErrUnauthorized", err)
		}

		c := &lifecycle.APIClient{Endpoint: gw.URL + "/prod", APIKey: "k-123"}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var once sync.Once
		var states []lifecycle.State
		addr, err := c.WaitRunning(ctx, 50*time.Millisecond, func(r lifecycle.WakeResult, elapsed time.Duration) {
			states = append(states, r.State)
			if r.State == lifecycle.StateStarting {
				// Play the ECS scheduler once the service asks for a task.
				once.Do(func() { f.StartTask(t, "127.0.0.1") })
			}
		})
		if err != nil {
			t.Fatalf("WaitRunning: %v (states %v)\nwake logs:\n%s", err, states, wake.Logs())
		}
		if addr != "127.0.0.1:8443" || states[0] != lifecycle.StateStarting || states[len(states)-1] != lifecycle.StateRunning {
			t.Fatalf("WaitRunning = %q after states %v, want 127.0.0.1:8443 after starting…running", addr, states)
		}
		if err := c.Kill(ctx); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		if got := desiredCount(t, endpoint, f.Cluster, f.Service); got != 0 {
			t.Fatalf("desired count after Kill = %d, want 0", got)
		}
	})
}

type sleepResult struct {
	Idle         bool   `json:"idle"`
	ScaledToZero bool   `json:"scaled_to_zero"`
	Reason       string `json:"reason"`
	State        string `json:"state"`
}

func invokeSleep(t *testing.T, rie *awstest.RIE) sleepResult {
	t.Helper()
	out, err := rie.Invoke(context.Background(), readEvent(t, "eventbridge-scheduled.json"))
	if err != nil {
		t.Fatalf("sleep: %v\n%s", err, rie.Logs())
	}
	var res sleepResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("sleep result %s: %v", out, err)
	}
	return res
}

type stats struct {
	active int64
	last   time.Time
}

func (s stats) ActiveStreams() int64    { return s.active }
func (s stats) LastActivity() time.Time { return s.last }

// sessionStats is a server's stats source that counts sessions, as
// daemons/server wires it.
type sessionStats struct {
	stats
	*usage.SessionCounter
}
