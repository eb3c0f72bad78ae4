package awstest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// BuildLambda builds ./lambdas/<name> exactly as for deployment
// (CGO_ENABLED=0, GOOS=linux, -tags lambda.norpc) into a temporary
// directory and returns the path of the "bootstrap" binary.
func BuildLambda(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	// GOARCH stays the host's so the emulator can run the binary here.
	if err := testbin.Build(dir, map[string]string{"bootstrap": "./lambdas/" + name}, []string{"GOOS=linux"}, "-tags", "lambda.norpc"); err != nil {
		t.Fatalf("build lambda %s: %v", name, err)
	}
	return filepath.Join(dir, "bootstrap")
}

// RIE is a running AWS Lambda Runtime Interface Emulator.
type RIE struct {
	// InvokeURL accepts POSTed event JSON and answers with the function's result.
	InvokeURL string
	logs      *testbin.Output
}

// StartEmulator runs bootstrapPath under aws-lambda-rie with exactly env (plus
// PATH and HOME) and returns the emulator, whose Invoke serialises calls (the emulator runs one invocation at a time) and whose Logs show the
// function's output.
func StartEmulator(t testing.TB, bootstrapPath string, env []string) *RIE {
	t.Helper()
	bin := LookTool(t, "aws-lambda-rie")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		apiAddr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		logs := &testbin.Output{}
		cmd := exec.Command(bin,
			"--runtime-interface-emulator-address", addr,
			"--runtime-api-address", apiAddr,
			bootstrapPath)
		cmd.Dir = filepath.Dir(bootstrapPath)
		// A clean environment: the function must get its settings from env
		// alone, as in Lambda, and never a developer's AWS credentials.
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "LOG_LEVEL=debug"}, env...)
		cmd.Stdout, cmd.Stderr = logs, logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start aws-lambda-rie: %v", err)
		}
		exited := waitExit(cmd)
		if err := waitTCP(addr, 15*time.Second, exited); err != nil {
			stopProcess(cmd, exited)
			lastErr = fmt.Errorf("%w; output:\n%s", err, logs.String())
			continue
		}
		t.Cleanup(func() {
			stopProcess(cmd, exited)
			if t.Failed() {
				t.Logf("lambda %s output:\n%s", bootstrapPath, logs.String())
			}
		})
		return &RIE{InvokeURL: "http://" + addr + "/2015-03-31/functions/function/invocations", logs: logs}
	}
	t.Fatalf("aws-lambda-rie did not start: %v", lastErr)
	return nil
}

// Logs returns everything the emulator and the function printed so far.
func (r *RIE) Logs() string { return r.logs.String() }

// Invoke sends one event and returns the function's raw result. A function
// error comes back as an error carrying the emulator's error document.
func (r *RIE) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	return InvokeURL(ctx, r.InvokeURL, event)
}

// invokeLocks serialises invocations per emulator URL for callers that only
// hold the URL (the adapter).
var invokeLocks sync.Map

func invoke(ctx context.Context, url string, event []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(event))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		return nil, fmt.Errorf("invoke: status %d: %s", resp.StatusCode, body)
	}
	var probe struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.ErrorType != "" {
		return nil, fmt.Errorf("invoke: function error %s: %s", probe.ErrorType, probe.ErrorMessage)
	}
	return body, nil
}

// InvokeURL sends one event to an emulator known only by its URL, one
// invocation at a time per URL.
func InvokeURL(ctx context.Context, url string, event []byte) ([]byte, error) {
	m, _ := invokeLocks.LoadOrStore(url, &sync.Mutex{})
	m.(*sync.Mutex).Lock()
	defer m.(*sync.Mutex).Unlock()
	return invoke(ctx, url, event)
}

// APIGatewayAdapter plays API Gateway's REST API in front of Lambdas under
// the emulator: it turns each HTTP request into an API Gateway proxy event,
// invokes the Lambda routed to its path, and writes the proxy response back.
// It also enforces the API key the way API Gateway does.
type APIGatewayAdapter struct {
	// Routes maps a path ("/wake") to an emulator invocation URL.
	Routes map[string]string
	// APIKey, when set, must arrive in x-api-key (else 403 {"message":"Forbidden"}).
	APIKey string
	// Stage is reported in the request context; default "test".
	Stage string
}

func writeGatewayError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-ErrorType", http.StatusText(status))
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (a *APIGatewayAdapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The stage prefix (e.g. /prod) is part of the URL in API Gateway; accept
	// any prefix so clients can use a realistic endpoint.
	path := r.URL.Path
	var target, resource string
	for p, u := range a.Routes {
		if path == p || strings.HasSuffix(path, p) {
			target, resource = u, p
		}
	}
	if target == "" {
		writeGatewayError(w, http.StatusForbidden, "Missing Authentication Token")
		return
	}
	if a.APIKey != "" && r.Header.Get("x-api-key") != a.APIKey {
		writeGatewayError(w, http.StatusForbidden, "Forbidden")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if err != nil {
		writeGatewayError(w, http.StatusBadRequest, "Bad Request")
		return
	}
	stage := a.Stage
	if stage == "" {
		stage = "test"
	}
	ev := events.APIGatewayProxyRequest{
		Resource:              resource,
		Path:                  resource,
		HTTPMethod:            r.Method,
		Headers:               map[string]string{},
		MultiValueHeaders:     map[string][]string{},
		QueryStringParameters: map[string]string{},
		Body:                  string(body),
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:    "123456789012",
			ResourcePath: resource,
			Stage:        stage,
			RequestID:    strconv.FormatInt(time.Now().UnixNano(), 36),
			HTTPMethod:   r.Method,
			APIID:        "fixture",
			Path:         "/" + stage + resource,
			Identity:     events.APIGatewayRequestIdentity{SourceIP: r.RemoteAddr, APIKey: r.Header.Get("x-api-key"), UserAgent: r.UserAgent()},
		},
	}
	for k, vs := range r.Header {
		ev.Headers[k] = vs[0]
		ev.MultiValueHeaders[k] = vs
	}
	for k, vs := range r.URL.Query() {
		ev.QueryStringParameters[k] = vs[0]
	}
	payload, _ := json.Marshal(ev)
	out, err := InvokeURL(r.Context(), target, payload)
	if err != nil {
		// What API Gateway answers when the Lambda fails.
		writeGatewayError(w, http.StatusBadGateway, "Internal server error")
		return
	}
	var resp events.APIGatewayProxyResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode == 0 {
		writeGatewayError(w, http.StatusBadGateway, "Internal server error")
		return
	}
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	respBody := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if respBody, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			writeGatewayError(w, http.StatusBadGateway, "Internal server error")
			return
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody)
}
