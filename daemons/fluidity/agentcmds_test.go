package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/status"
)

// runWith is runCLI with an environment.
func runWith(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	code := run(args, environ, &out, &errb)
	return code, out.String(), errb.String()
}

// writeAgentYAML writes an agent.yaml holding content; keys the CLI does not
// use must not bother it.
func writeAgentYAML(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStatusCommand: fluidity status finds the admin listener in the agent's
// configuration (or --admin), prints the facts for a person or as JSON, and
// exits 0 when up, 3 when down, 1 when nobody answers.
func TestStatusCommand(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	snap := status.Snapshot{
		Time: now, Up: true, State: status.StateConnected, Since: now.Add(-90 * time.Second), Route: "http://proxy.corp:3128 (CONNECT)",
		Sessions: []status.Session{{ID: 0, Up: true, Since: now.Add(-90 * time.Second), RTTMillis: 12.5, Streams: 2, Received: 2_500_000, Sent: 40_000}, {ID: 1}},
		Streams:  status.Streams{Active: 2, ByKind: map[string]int{"connect": 2}, Total: 17},
		Traffic:  status.Traffic{WindowSeconds: 3, ReceivedPerSecond: 1_200_000, SentPerSecond: 3000, Received: 2_500_000, Sent: 40_000},
		Errors:   []status.ErrorCount{{Code: "dns", Recent: 1, Total: 3, Last: now.Add(-2 * time.Minute)}},
	}
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status.json" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(snap)
	}))
	defer agent.Close()
	addr := strings.TrimPrefix(agent.URL, "http://")
	cfg := writeAgentYAML(t, "server_ip: 192.0.2.1\nadmin_listen: "+addr+"\nsessions: 2\nlifecycle:\n  wake_mode: on_demand\n")

	code, out, errOut := runWith(t, nil, "status", "--config", cfg)
	if code != exitOK {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"Connected for 1m30s (1 of 2 sessions up)", "http://proxy.corp:3128 (CONNECT)", "round trip 12.5 ms",
		"2 open (connect 2), 17 since start", "↓ 1.2 MB/s ↑ 3.0 kB/s now", "dns: 1 in the last 15 min, 3 since start", "the target name does not resolve",
		"http://" + addr + "/"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runWith(t, nil, "status", "--config", cfg, "--json")
	var back status.Snapshot
	if code != exitOK || json.Unmarshal([]byte(out), &back) != nil || back.State != status.StateConnected {
		t.Errorf("status --json: exit %d\n%s", code, out)
	}

	mu.Lock()
	snap.Up, snap.State, snap.Reason = false, status.StateReconnecting, "dial tcp 192.0.2.1:8443: connect: connection refused"
	snap.Sessions[0] = status.Session{ID: 0}
	mu.Unlock()
	// The environment names the address, as it would for the agent.
	code, out, _ = runWith(t, []string{"FLUIDITY_AGENT_ADMIN_LISTEN=" + addr}, "status")
	if code != exitDown || !strings.Contains(out, "Reconnecting") || !strings.Contains(out, "connection refused") {
		t.Errorf("tunnel down: exit %d, want %d\n%s", code, exitDown, out)
	}

	agent.Close()
	code, _, errOut = runWith(t, nil, "status", "--admin", addr)
	if code != exitError || !strings.Contains(errOut, "does not answer") {
		t.Errorf("agent gone: exit %d, %q", code, errOut)
	}
	if code, _, _ := runWith(t, nil, "status", "extra"); code != exitUsage {
		t.Errorf("extra argument: exit %d", code)
	}
	if code, out, _ := runWith(t, nil, "status", "--help"); code != exitOK || !strings.Contains(out, "fluidity wake") {
		t.Errorf("status --help: %d\n%s", code, out)
	}
}

// TestWakeSleepCommands: wake and sleep call the API with the agent's
// lifecycle section (the key from the environment here).
func TestWakeSleepCommands(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path+" key="+r.Header.Get("x-api-key"))
		n := len(calls)
		mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/prod/wake":
			if n < 2 {
				_, _ = io.WriteString(w, `{"state":"starting","desired_count":1}`)
				return
			}
			_, _ = io.WriteString(w, `{"state":"running","address":"192.0.2.7:8443","desired_count":1,"running_count":1}`)
		case "/prod/kill":
			if strings.Contains(string(body), "agent_exit") {
				t.Errorf("sleep sent an agent's exit Kill: %s", body)
			}
			_, _ = io.WriteString(w, `{"state":"stopping"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	cfg := writeAgentYAML(t, "server_port: 443\nlifecycle:\n  api_endpoint: "+api.URL+"/prod\n  poll_interval: 10ms\n")
	env := []string{"FLUIDITY_AGENT_LIFECYCLE__API_KEY=k3y"}

	if code, out, errOut := runWith(t, env, "wake", "--config", cfg); code != exitOK || strings.TrimSpace(out) != "server starting" {
		t.Errorf("wake: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := runWith(t, env, "wake", "--config", cfg, "--wait"); code != exitOK || !strings.Contains(out, "server running at 192.0.2.7:8443") {
		t.Errorf("wake --wait: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := runWith(t, env, "sleep", "--config", cfg); code != exitOK || strings.TrimSpace(out) != "server stopping" {
		t.Errorf("sleep: exit %d %q %q", code, out, errOut)
	}
	mu.Lock()
	for _, c := range calls {
		if !strings.HasSuffix(c, "key=k3y") {
			t.Errorf("call without the configured key: %s", c)
		}
	}
	mu.Unlock()
	if code, _, errOut := runWith(t, nil, "sleep"); code != exitUsage || !strings.Contains(errOut, "lifecycle.api_endpoint") {
		t.Errorf("sleep without a lifecycle section: exit %d %q", code, errOut)
	}
	if code, _, errOut := runWith(t, nil, "wake", "--config", cfg); code != exitError || !strings.Contains(errOut, "api_key") {
		t.Errorf("wake without a key: exit %d %q", code, errOut)
	}
}
