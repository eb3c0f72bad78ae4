package awstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

func TestFixECSTasks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, target, in, want string
	}{
		{"describe tasks", "AmazonEC2ContainerServiceV20141113.DescribeTasks",
			`{"tasks":[{"cpu":256,"memory":"512","containers":[{"cpu":256,"memory":512,"memoryReservation":128,"name":"s"}]}]}`,
			`{"tasks":[{"containers":[{"cpu":"256","memory":"512","memoryReservation":"128","name":"s"}],"cpu":"256","memory":"512"}]}`},
		{"task definitions untouched", "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition",
			`{"taskDefinition":{"containerDefinitions":[{"cpu":256}]}}`, `{"taskDefinition":{"containerDefinitions":[{"cpu":256}]}}`},
		{"other services untouched", "GraniteServiceVersion20100801.GetMetricData", `{"tasks":[{"cpu":1}]}`, `{"tasks":[{"cpu":1}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			req.Header.Set("X-Amz-Target", tc.target)
			resp := &http.Response{Request: req, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(tc.in)), ContentLength: int64(len(tc.in))}
			if err := fixECSTasks(resp); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			var a, b any
			_ = json.Unmarshal(got, &a)
			_ = json.Unmarshal([]byte(tc.want), &b)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) || resp.ContentLength != int64(len(got)) {
				t.Fatalf("got %s (length %d), want %s", got, resp.ContentLength, tc.want)
			}
		})
	}
}

// The adapter builds proxy events and plays API Gateway's own answers.
func TestAPIGatewayAdapter(t *testing.T) {
	t.Parallel()
	var seen events.APIGatewayProxyRequest
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&seen)
		if seen.Path == "/kill" {
			_, _ = w.Write([]byte(`{"errorType":"Runtime.ExitError","errorMessage":"boom"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(events.APIGatewayProxyResponse{
			StatusCode: 201, Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"ok":true}`,
		})
	}))
	t.Cleanup(fn.Close)
	gw := httptest.NewServer(&APIGatewayAdapter{Routes: map[string]string{"/wake": fn.URL, "/kill": fn.URL}, APIKey: "k", Stage: "prod"})
	t.Cleanup(gw.Close)

	tests := []struct {
		name, path, key string
		status          int
		body            string
	}{
		{"routed", "/prod/wake", "k", 201, `{"ok":true}`},
		{"wrong key", "/prod/wake", "x", 403, `{"message":"Forbidden"}`},
		{"unknown path", "/prod/nope", "k", 403, `{"message":"Missing Authentication Token"}`},
		{"function error", "/prod/kill", "k", 502, `{"message":"Internal server error"}`},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+tc.path, strings.NewReader("{}"))
		req.Header.Set("x-api-key", tc.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || strings.TrimSpace(string(b)) != tc.body {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, b, tc.status, tc.body)
		}
	}
	if seen.HTTPMethod != http.MethodPost || seen.RequestContext.Stage != "prod" || seen.Headers["X-Api-Key"] != "k" || seen.Body != "{}" {
		t.Errorf("proxy event %+v", seen)
	}
}

// recordTB notes Fatalf instead of stopping, to observe LookTool failing.
type recordTB struct {
	testing.TB
	failed bool
}

func (r *recordTB) Helper() {}
func (r *recordTB) Fatalf(string, ...any) {
	r.failed = true
}

// A missing tool must fail the test, never skip it: CI installs the tools.
func TestLookToolFailsWhenMissing(t *testing.T) {
	t.Parallel()
	r := &recordTB{TB: t}
	if p := LookTool(r, "no-such-tool-fluidity"); p != "" || !r.failed {
		t.Fatalf("LookTool of a missing tool = %q, failed=%v", p, r.failed)
	}
	if p := LookTool(t, "go"); p == "" {
		t.Fatal("go not found")
	}
}
