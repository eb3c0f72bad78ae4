package testbin

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SharedTempDir is a temporary directory (mode 0777) that daemons which drop
// root for their own user (squid, sshd) can read; removed by Cleanup.
func SharedTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Output collects a process's stdout and stderr; safe to read while it runs.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// StartDaemon starts cmd, a third-party daemon running in the foreground, with
// its output collected. Cleanup sends it SIGTERM, kills it if it is still
// there 5 s later, and logs its output and extra() (nil: nothing more) if the
// test failed. A daemon that exits early is noticed by the caller's next wait.
func StartDaemon(t testing.TB, name string, cmd *exec.Cmd, extra func() string) (*Output, error) {
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s still running 5s after SIGTERM; killing it", name)
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			msg := name + " output:\n" + out.String()
			if extra != nil {
				msg += "\n" + extra()
			}
			t.Log(msg)
		}
	})
	return out, nil
}

// CleanEnv is this process's environment without what would change how a
// program behaves: FLUIDITY_* settings, proxy variables, Kerberos settings.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		uk := strings.ToUpper(k)
		if strings.HasPrefix(uk, "FLUIDITY_") || strings.HasSuffix(uk, "_PROXY") || uk == "CURL_HOME" || strings.HasPrefix(uk, "KRB5") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
