// Package awstest runs the local stand-ins for AWS that the control-plane
// tests use: moto_server (AWS APIs), the Lambda Runtime Interface Emulator,
// and a small API Gateway adapter. Everything listens on 127.0.0.1 on free
// ports and is stopped in t.Cleanup. A missing tool fails the test: CI
// installs them (scripts/ci-deps.sh), so a skip would only hide a broken setup.
package awstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// Region is the region every fixture uses.
const Region = "us-east-1"

// Dummy credentials: moto accepts anything, and real ones must never be used.
const (
	AccessKeyID     = "testing"
	SecretAccessKey = "testing"
)

// LookTool finds an executable in PATH or in $(go env GOPATH)/bin, where
// scripts/ci-deps.sh installs Go tools, and fails the test when it is absent.
func LookTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	var dirs []string
	if gp := goEnv(t, "GOPATH"); gp != "" {
		for _, d := range filepath.SplitList(gp) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if gb := goEnv(t, "GOBIN"); gb != "" {
		dirs = append(dirs, gb)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s not found in PATH or %v; run scripts/ci-deps.sh", name, dirs)
	return ""
}

func goEnv(t testing.TB, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := testbin.FreePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return port
}

// Moto is a running moto_server.
type Moto struct {
	// Endpoint is what SDK clients should use (AWS_ENDPOINT_URL). It is a
	// fixture proxy in front of moto that fixes moto's ECS answers; see
	// fixECSTasks.
	Endpoint string
	// Direct is moto itself.
	Direct string
}

// StartMoto starts moto_server and returns the endpoint SDK clients should use.
func StartMoto(t testing.TB) string {
	t.Helper()
	return StartMotoServer(t).Endpoint
}

// StartMotoServer starts moto_server on a free port, waits for it, freezes
// ECS task state progression (tasks stay in the status they were created
// or set to) and puts the ECS-fixing proxy in front of it.
func StartMotoServer(t testing.TB) *Moto {
	t.Helper()
	bin := LookTool(t, "moto_server")
	var direct string
	var lastErr error
	// The port can be taken between FreePort and moto binding it: try again.
	for attempt := 0; attempt < 3 && direct == ""; attempt++ {
		port := FreePort(t)
		logBuf := &testbin.Output{}
		cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		cmd.Stdout, cmd.Stderr = logBuf, logBuf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start moto_server: %v", err)
		}
		exited := waitExit(cmd)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		// Only moto answers its data endpoint with JSON: a process that took the
		// port first (the race above) must not pass for moto.
		if err := waitMoto(url, 30*time.Second, exited); err != nil {
			stopProcess(cmd, exited)
			lastErr = fmt.Errorf("%w; moto output:\n%s", err, logBuf.String())
			continue
		}
		t.Cleanup(func() {
			stopProcess(cmd, exited)
			if t.Failed() {
				out := logBuf.String()
				t.Logf("moto_server output (tail):\n%s", out[max(0, len(out)-6000):])
			}
		})
		direct = url
	}
	if direct == "" {
		t.Fatalf("moto_server did not start: %v", lastErr)
	}
	// Freeze ECS tasks: by default moto advances a task one step
	// (RUNNING→DEACTIVATING→…→STOPPED) on every DescribeTasks.
	SetTransition(t, direct, "ecs::task", map[string]any{"progression": "manual", "times": 1_000_000})

	target, _ := url.Parse(direct)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = fixECSTasks
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return &Moto{Endpoint: srv.URL, Direct: direct}
}

// SetTransition configures moto's state manager for one model.
func SetTransition(t testing.TB, motoURL, model string, transition map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model_name": model, "transition": transition})
	resp, err := http.Post(motoURL+"/moto-api/state-manager/set-transition", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("moto set-transition: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("moto set-transition: %s: %s", resp.Status, b)
	}
}

// waitMoto waits until url answers moto's data endpoint with JSON, or moto exits.
func waitMoto(url string, timeout time.Duration, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/moto-api/data.json", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var v map[string]any
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&v) == nil
			resp.Body.Close()
			if ok {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("moto_server exited before it answered on %s: %w", url, exitErr(err))
		case <-ctx.Done():
			return fmt.Errorf("moto_server did not answer on %s within %v", url, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitTCP(addr string, timeout time.Duration, exited <-chan error) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("process exited before %s listened: %w", addr, exitErr(err))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen within %v", addr, timeout)
		}
	}
}

// exitErr is cmd.Wait's err, which is nil for a clean exit, as an error.
func exitErr(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// waitExit waits for the started cmd: the channel gives its exit status, then
// is closed, so that after a wait for it to start has taken the status,
// stopProcess still sees the process is gone instead of blocking forever.
func waitExit(cmd *exec.Cmd) <-chan error {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); close(exited) }()
	return exited
}

// stopProcess ends a process group we started: TERM, then KILL after 5 s.
func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited: //nolint:errcheck // the exit status of a process we signalled tells nothing
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited //nolint:errcheck // killed: its exit status tells nothing
	}
}

// fixECSTasks rewrites moto's ECS task answers where they break the ECS API
// contract: moto returns containers[].cpu/memory/memoryReservation (and
// sometimes the task-level cpu/memory) as JSON numbers, the API defines them
// as strings, and the Go SDK rejects numbers. This is fixture-only: product
// code talks to the real API shape.
func fixECSTasks(resp *http.Response) error {
	target := resp.Request.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(target, "AmazonEC2ContainerServiceV20141113.") {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var doc map[string]any
	if json.Unmarshal(body, &doc) == nil {
		changed := false
		fixTask := func(v any) {
			task, ok := v.(map[string]any)
			if !ok {
				return
			}
			changed = stringify(task, "cpu", "memory") || changed
			if cs, ok := task["containers"].([]any); ok {
				for _, c := range cs {
					if cm, ok := c.(map[string]any); ok {
						changed = stringify(cm, "cpu", "memory", "memoryReservation") || changed
					}
				}
			}
		}
		if ts, ok := doc["tasks"].([]any); ok {
			for _, task := range ts {
				fixTask(task)
			}
		}
		fixTask(doc["task"])
		if changed {
			body, _ = json.Marshal(doc)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func stringify(m map[string]any, keys ...string) bool {
	changed := false
	for _, k := range keys {
		if f, ok := m[k].(float64); ok {
			m[k] = strconv.FormatFloat(f, 'f', -1, 64)
			changed = true
		}
	}
	return changed
}

// AWSConfig returns an SDK configuration for endpoint with dummy credentials;
// no shared config files or environment are consulted, so a developer's real
// profile can never be picked up.
func AWSConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		BaseEndpoint: aws.String(endpoint),
		// Fixture endpoints are local: fail fast instead of retrying for seconds.
		RetryMaxAttempts: 2,
	}
}

// LambdaEnv is the environment a Lambda under the emulator needs to reach
// moto through the standard SDK chain, plus any extra variables.
func LambdaEnv(endpoint string, extra ...string) []string {
	return append([]string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		// Keep a developer's ~/.aws out of it.
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	}, extra...)
}
