package lifecycle_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// gateway answers like API Gateway + the Lambdas: each call to /wake takes
// the next scripted answer (the last one repeats).
type gateway struct {
	requests atomic.Int32 // every request, refused ones too
	answers  []answer
	calls    atomic.Int32
	kills    atomic.Int32
	// kill, when set, answers /kill; killBody records the last request body.
	kill     *answer
	killBody atomic.Value
}

type answer struct {
	status int
	body   string
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.requests.Add(1)
	if r.Header.Get("x-api-key") != "secret" {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"Forbidden"}`))
		return
	}
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte(`{"code":"method_not_allowed","message":"use POST"}`))
		return
	}
	switch r.URL.Path {
	case "/prod/wake":
		n := int(g.calls.Add(1)) - 1
		a := g.answers[min(n, len(g.answers)-1)]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	case "/prod/kill":
		g.kills.Add(1)
		b, _ := io.ReadAll(r.Body)
		g.killBody.Store(string(b))
		if g.kill != nil {
			w.WriteHeader(g.kill.status)
			_, _ = w.Write([]byte(g.kill.body))
			return
		}
		_, _ = w.Write([]byte(`{"state":"sleeping","desired_count":0,"running_count":0,"pending_count":0}`))
	default:
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"Missing Authentication Token"}`))
	}
}

func newGateway(t *testing.T, answers ...answer) (*gateway, *lifecycle.APIClient) {
	t.Helper()
	g := &gateway{answers: answers}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, &lifecycle.APIClient{Endpoint: srv.URL + "/prod/", APIKey: "secret", HTTPClient: srv.Client()}
}

const (
	starting = `{"state":"starting","desired_count":1,"running_count":0,"pending_count":1}`
	running  = `{"state":"running","address":"203.0.113.5:8443","desired_count":1,"running_count":1,"pending_count":0}`
)

func TestAPIClientWake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  answer
		key     string
		want    lifecycle.WakeResult
		errIs   error
		errCode string
	}{
		{name: "running", answer: answer{200, running}, key: "secret",
			want: lifecycle.WakeResult{State: lifecycle.StateRunning, Address: "203.0.113.5:8443", DesiredCount: 1, RunningCount: 1}},
		{name: "starting", answer: answer{200, starting}, key: "secret",
			want: lifecycle.WakeResult{State: lifecycle.StateStarting, DesiredCount: 1, PendingCount: 1}},
		{name: "wrong key", answer: answer{200, running}, key: "nope", errIs: lifecycle.ErrUnauthorized},
		{name: "lambda failure", answer: answer{500, `{"code":"aws_error","message":"wake: the ECS service could not be updated or read"}`},
			key: "secret", errIs: lifecycle.ErrUnavailable, errCode: lifecycle.CodeAWS},
		{name: "gateway 502 html", answer: answer{502, `<html>bad gateway</html>`}, key: "secret", errIs: lifecycle.ErrUnavailable},
		{name: "throttled", answer: answer{429, `{"message":"Too Many Requests"}`}, key: "secret", errIs: lifecycle.ErrThrottled},
		{name: "bad request", answer: answer{400, `{"code":"bad_request","message":"no"}`}, key: "secret", errIs: lifecycle.ErrBadRequest, errCode: "bad_request"},
		{name: "garbage 200", answer: answer{200, `not json`}, key: "secret", errIs: nil, errCode: "decode"},
		{name: "failed", answer: answer{200, `{"state":"failed","desired_count":1,"reason":"Essential container in task exited (server: exit code 1)","failed_starts":2}`},
			key: "secret", want: lifecycle.WakeResult{State: lifecycle.StateFailed, DesiredCount: 1,
				Reason: "Essential container in task exited (server: exit code 1)", FailedStarts: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := newGateway(t, tc.answer)
			c.APIKey = tc.key
			got, err := c.Wake(context.Background())
			if tc.errIs == nil && tc.errCode == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Wake = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Wake = %+v, want an error", got)
			}
			if tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Fatalf("err %v is not %v", err, tc.errIs)
			}
			var ae *lifecycle.APIError
			if tc.errIs != nil && tc.errCode != "" && (!errors.As(err, &ae) || ae.Code != tc.errCode) {
				t.Fatalf("err %v: want an *APIError with code %q", err, tc.errCode)
			}
		})
	}
}

func TestAPIClientWaitRunning(t *testing.T) {
	t.Parallel()
	t.Run("polls until running, through temporary failures", func(t *testing.T) {
		t.Parallel()
		g, c := newGateway(t, answer{200, starting}, answer{503, `{"message":"Service Unavailable"}`}, answer{200, starting}, answer{200, running})
		var logs bytes.Buffer
		c.Log = zerolog.New(&logs)
		var seen []lifecycle.State
		var lastElapsed time.Duration
		addr, err := c.WaitRunning(context.Background(), time.Millisecond, func(r lifecycle.WakeResult, elapsed time.Duration) {
			seen = append(seen, r.State)
			if elapsed < lastElapsed {
				t.Errorf("elapsed went backwards: %v < %v", elapsed, lastElapsed)
			}
			lastElapsed = elapsed
		})
		if err != nil || addr != "203.0.113.5:8443" {
			t.Fatalf("WaitRunning = %q, %v", addr, err)
		}
		if len(seen) != 3 || seen[2] != lifecycle.StateRunning || g.calls.Load() != 4 {
			t.Fatalf("progress %v after %d calls, want starting, starting, running after 4", seen, g.calls.Load())
		}
		// Only the failure is logged as one; "starting" is progress, not a failure.
		if n := strings.Count(logs.String(), "wake failed, retrying"); n != 1 {
			t.Fatalf("%d retry notices, want 1 for the 503:\n%s", n, logs.String())
		}
	})
	t.Run("stops on a rejected key", func(t *testing.T) {
		t.Parallel()
		g, c := newGateway(t, answer{200, starting})
		c.APIKey = "wrong"
		if _, err := c.WaitRunning(context.Background(), time.Millisecond, nil); !errors.Is(err, lifecycle.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if g.calls.Load() != 0 {
			t.Fatal("the gateway should have refused before the Lambda")
		}
	})
	for _, tc := range []struct {
		name   string
		answer answer
		is     error
	}{
		{"stops at once on a missing service", answer{404, `{"code":"service_not_found","message":"wake: the ECS service does not exist"}`}, lifecycle.ErrNotFound},
		{"stops at once on a rejected request", answer{400, `{"code":"bad_request","message":"no"}`}, lifecycle.ErrBadRequest},
		{"stops at once on a failed server", answer{200, `{"state":"failed","desired_count":1,"reason":"CannotPullContainerError: pull access denied","failed_starts":3}`}, lifecycle.ErrServerFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, c := newGateway(t, tc.answer)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.WaitRunning(ctx, time.Millisecond, nil)
			if !errors.Is(err, tc.is) || ctx.Err() != nil || g.calls.Load() != 1 {
				t.Fatalf("err = %v after %d calls, want %v after exactly one", err, g.calls.Load(), tc.is)
			}
			var fe *lifecycle.FailedError
			if errors.As(err, &fe) && (fe.FailedStarts != 3 || !strings.Contains(err.Error(), "pull access denied")) {
				t.Fatalf("failed error %+v / %q lacks the count or reason", fe, err)
			}
		})
	}
	t.Run("gives up when the context ends", func(t *testing.T) {
		t.Parallel()
		_, c := newGateway(t, answer{200, starting})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.WaitRunning(ctx, 5*time.Millisecond, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
	})
	t.Run("network errors are retried", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // nothing listens any more
		c := &lifecycle.APIClient{Endpoint: url, APIKey: "secret"}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.WaitRunning(ctx, 10*time.Millisecond, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want to keep retrying until the deadline", err)
		}
	})
}

func TestAPIClientKill(t *testing.T) {
	t.Parallel()
	g, c := newGateway(t, answer{200, running})
	if err := c.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.kills.Load() != 1 || g.killBody.Load() != "{}" {
		t.Fatalf("kills = %d, body %v; want 1 unconditional ({})", g.kills.Load(), g.killBody.Load())
	}
}

// An agent's Kill on exit says so and carries its own sessions; a refusal is
// ErrInUse, permanent, with a hint, and not ErrUnavailable.
func TestAPIClientKillOnExit(t *testing.T) {
	t.Parallel()
	g, c := newGateway(t, answer{200, running})
	own := lifecycle.AgentUse{Sessions: 2, SteadySeconds: 3600}
	if _, err := c.KillOnExit(context.Background(), own); err != nil {
		t.Fatal(err)
	}
	if got, want := g.killBody.Load(), `{"reason":"agent_exit","own":{"sessions":2,"steady_seconds":3600}}`; got != want {
		t.Fatalf("kill body %v, want %s", got, want)
	}
	g.kill = &answer{409, `{"code":"in_use","message":"kill: another agent is connected"}`}
	_, err := c.KillOnExit(context.Background(), lifecycle.AgentUse{})
	if !errors.Is(err, lifecycle.ErrInUse) || !errors.Is(err, lifecycle.ErrPermanent) || errors.Is(err, lifecycle.ErrUnavailable) || lifecycle.IsTemporary(err) {
		t.Fatalf("refused kill: %v, want ErrInUse, permanent", err)
	}
	if !strings.Contains(err.Error(), "stays up") {
		t.Errorf("no hint in %q", err)
	}
}

// Every status maps to one class: 4xx (but 408, 429) are permanent, typed and
// hinted; 5xx, 408, 429 and transport errors stay retryable.
func TestAPIErrorClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		code      string
		is        []error
		temporary bool
		hint      string
	}{
		{400, "bad_request", []error{lifecycle.ErrBadRequest, lifecycle.ErrPermanent}, false, "api_endpoint"},
		{401, "", []error{lifecycle.ErrUnauthorized, lifecycle.ErrPermanent}, false, "check api_key"},
		{403, "", []error{lifecycle.ErrUnauthorized, lifecycle.ErrPermanent}, false, "check api_key"},
		{404, lifecycle.CodeServiceNotFound, []error{lifecycle.ErrNotFound, lifecycle.ErrBadRequest, lifecycle.ErrPermanent}, false, "check the service/cluster names of the stack"},
		{404, lifecycle.CodeClusterNotFound, []error{lifecycle.ErrNotFound, lifecycle.ErrBadRequest, lifecycle.ErrPermanent}, false, "check the service/cluster names of the stack"},
		{409, lifecycle.CodeInUse, []error{lifecycle.ErrInUse, lifecycle.ErrBadRequest, lifecycle.ErrPermanent}, false, "stays up"},
		{408, "", nil, true, ""},
		{429, "", []error{lifecycle.ErrThrottled}, true, ""},
		{500, lifecycle.CodeAWS, []error{lifecycle.ErrUnavailable}, true, ""},
		{502, "", []error{lifecycle.ErrUnavailable}, true, ""},
		{503, "", []error{lifecycle.ErrUnavailable}, true, ""},
	}
	all := []error{lifecycle.ErrBadRequest, lifecycle.ErrUnauthorized, lifecycle.ErrNotFound, lifecycle.ErrInUse,
		lifecycle.ErrPermanent, lifecycle.ErrThrottled, lifecycle.ErrUnavailable, lifecycle.ErrServerFailed}
	for _, tc := range tests {
		err := fmt.Errorf("wake: %w", &lifecycle.APIError{StatusCode: tc.status, Code: tc.code})
		for _, target := range all {
			want := slices.Contains(tc.is, target)
			if errors.Is(err, target) != want {
				t.Errorf("%d %s: errors.Is(%v) = %v, want %v", tc.status, tc.code, target, !want, want)
			}
		}
		if lifecycle.IsTemporary(err) != tc.temporary {
			t.Errorf("%d: IsTemporary = %v, want %v", tc.status, !tc.temporary, tc.temporary)
		}
		if tc.hint != "" && !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%d: %q lacks the hint %q", tc.status, err, tc.hint)
		}
		if tc.hint == "" && strings.Contains(err.Error(), "check") {
			t.Errorf("%d: %q hints at a misconfiguration", tc.status, err)
		}
	}
	if !lifecycle.IsTemporary(errors.New("dial tcp: connection refused")) {
		t.Error("transport error not temporary")
	}
	if lifecycle.IsTemporary(&lifecycle.FailedError{}) || lifecycle.IsTemporary(context.Canceled) {
		t.Error("failed server or cancellation counted temporary")
	}
}

func TestAPIClientValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"https://abc.execute-api.eu-west-1.amazonaws.com/prod", true},
		{"http://127.0.0.1:9000", true},
		{"", false},
		{"abc.execute-api.eu-west-1.amazonaws.com", false},
		{"ftp://x/y", false},
	} {
		c := &lifecycle.APIClient{Endpoint: tc.endpoint}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.endpoint, err, tc.ok)
		}
	}
}

// TestEndpointNeverShowsPassword: a user:password@ in the endpoint reaches no
// error or log text.
func TestEndpointNeverShowsPassword(t *testing.T) {
	for _, ep := range []string{
		"https://alice:s3cret-pw@api.example/prod",
		"ftp://alice:s3cret-pw@api.example/prod",
		"https://alice:s3cret-pw@api.example/%zz",
		"https://alice:s3cret-pw@[::1/prod",
	} {
		err := (&lifecycle.APIClient{Endpoint: ep}).Validate()
		for _, text := range []string{lifecycle.RedactedEndpoint(ep), fmt.Sprint(err)} {
			if strings.Contains(text, "s3cret-pw") {
				t.Errorf("%q: %q shows the password", ep, text)
			}
		}
	}
	if got := lifecycle.RedactedEndpoint("https://alice:s3cret-pw@api.example/prod"); !strings.Contains(got, "api.example/prod") {
		t.Errorf("redacted endpoint %s lost the address", got)
	}
}
