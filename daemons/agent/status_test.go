package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/pac"
	"github.com/fluidity-tunnel/fluidity/internal/status"
)

// fakeLifecycleAPI answers Wake with the server running at addr, and Kill
// with it stopping, counting the calls.
type fakeLifecycleAPI struct {
	addr         string
	wakes, kills atomic.Int32
	// starting: Wake answers that the server is starting, not running.
	starting atomic.Bool
	*httptest.Server
}

func newFakeLifecycleAPI(t *testing.T, addr string) *fakeLifecycleAPI {
	f := &fakeLifecycleAPI{addr: addr}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-api-key") != "test-key" {
			http.Error(w, `{"message":"Forbidden"}`, http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/wake":
			f.wakes.Add(1)
			if f.starting.Load() {
				_, _ = io.WriteString(w, `{"state":"starting","desired_count":1,"pending_count":1}`)
				return
			}
			fmt.Fprintf(w, `{"state":"running","address":%q,"desired_count":1,"running_count":1}`, f.addr)
		case "/kill":
			f.kills.Add(1)
			_, _ = io.WriteString(w, `{"state":"stopping","desired_count":0,"running_count":1}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// TestAgentStatusRoutes runs the agent with a lifecycle API and its admin
// listener, and checks the status page, status.json, the PAC file and the
// buttons; and that the routes refuse a foreign Host (DNS rebinding) and a
// cross-origin POST, which then reaches no API.
func TestAgentStatusRoutes(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, cliFiles := writeCerts(t, dir)
	serverPort := startServer(t, ca, srvCert)
	api := newFakeLifecycleAPI(t, "127.0.0.1:"+strconv.Itoa(serverPort))
	proxyPort, adminPort, socksPort := awstest.FreePort(t), awstest.FreePort(t), awstest.FreePort(t)
	admin := "127.0.0.1:" + strconv.Itoa(adminPort)
	logs, _ := runAgent(t, []string{
		"--local-proxy-port", strconv.Itoa(proxyPort), "--admin-listen", admin, "--socks-port", strconv.Itoa(socksPort),
		"--cert-file", cliFiles[0], "--key-file", cliFiles[1], "--ca-cert-file", filepath.Join(dir, "ca.crt"),
		"--lifecycle-api-endpoint", api.URL, "--lifecycle-api-key", "test-key", "--lifecycle-kill-on-exit=false",
		"--direct-domains", "corp.example,.intra.example", "--direct-cidrs", "10.0.0.0/8",
	})
	base := "http://" + admin
	var snap status.Snapshot
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		snap, err = getStatus(t, admin)
		if err == nil && snap.State == status.StateConnected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never connected (last %+v, %v); log:\n%s", snap, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !snap.Up || snap.Route != "direct" || !snap.Actions || snap.Wake == nil || len(snap.Sessions) != 2 ||
		snap.Proxy != "127.0.0.1:"+strconv.Itoa(proxyPort) {
		t.Errorf("status.json: %+v", snap)
	}

	resp, page := getPage(t, base+"/", admin)
	if resp.StatusCode != 200 || !strings.Contains(page, `data-state="connected"`) || !strings.Contains(page, "Wake now") {
		t.Errorf("status page: %d\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("status page CSP %q", csp)
	}
	if strings.Contains(page, "http://") && strings.Contains(page, "src=\"http") {
		t.Error("the status page loads something from elsewhere")
	}
	resp, script := getPage(t, base+"/proxy.pac", "localhost:"+strconv.Itoa(adminPort))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != pac.ContentType ||
		!strings.Contains(script, `"PROXY 127.0.0.1:`+strconv.Itoa(proxyPort)+`; SOCKS5 127.0.0.1:`+strconv.Itoa(socksPort)+`"`) || !strings.Contains(script, `"intra.example"`) ||
		!strings.Contains(script, `["10.0.0.0","255.0.0.0"]`) {
		t.Errorf("proxy.pac: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), script)
	}

	// DNS rebinding: a page on a name of its own that resolves to 127.0.0.1.
	for _, path := range []string{"/", "/status.json", "/proxy.pac", "/metrics"} {
		if resp, _ := getPage(t, base+path, "rebind.example:"+strconv.Itoa(adminPort)); resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with a foreign Host: %d, want 421", path, resp.StatusCode)
		}
	}

	post := func(path string, header map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, nil)
		req.Header.Set("Accept", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wakesBefore := api.wakes.Load()
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
	} {
		for _, path := range []string{"/wake", "/sleep"} {
			if code := post(path, h); code != http.StatusForbidden {
				t.Errorf("cross-origin POST %s (%v): %d, want 403", path, h, code)
			}
		}
	}
	if api.wakes.Load() != wakesBefore || api.kills.Load() != 0 {
		t.Fatalf("a refused POST reached the API: %d wakes (%d before), %d kills", api.wakes.Load(), wakesBefore, api.kills.Load())
	}
	same := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": base}
	if code := post("/wake", same); code != 200 || api.wakes.Load() != wakesBefore+1 {
		t.Errorf("same-origin wake: %d, %d API wakes", code, api.wakes.Load()-wakesBefore)
	}
	if code := post("/sleep", same); code != 200 || api.kills.Load() != 1 {
		t.Errorf("same-origin sleep: %d, %d API kills", code, api.kills.Load())
	}
	snap, err := getStatus(t, admin)
	if err != nil {
		t.Fatal(err)
	}
	if a := snap.LastAction; a == nil || a.Name != "sleep" || a.Result != "stopping" || !a.OK {
		t.Errorf("last action %+v, want sleep answered stopping", a)
	}
}

// getPage GETs url with host as the Host header and returns the answer and its
// body, read and closed.
//
//bodyclose:handled
func getPage(t *testing.T, url, host string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestAgentSplitConfig: direct_domains and direct_cidrs that could not be
// checked by a PAC file (or would inject script into it) are refused at start.
func TestAgentSplitConfig(t *testing.T) {
	for _, bad := range []string{
		`FLUIDITY_AGENT_DIRECT_DOMAINS=corp.example";alert(1);//`,
		"FLUIDITY_AGENT_DIRECT_DOMAINS=a..b",
		"FLUIDITY_AGENT_DIRECT_CIDRS=10.0.0.0",
		"FLUIDITY_AGENT_DIRECT_CIDRS=fd00::/8",
	} {
		var stderr strings.Builder
		args := []string{"--server-ip", "127.0.0.1", "--cert-file", "a", "--key-file", "b", "--ca-cert-file", "c"}
		if code := run(t.Context(), args, []string{bad}, io.Discard, &stderr); code != 2 {
			t.Errorf("%s: exit %d, want 2", bad, code)
		}
		name, _, _ := strings.Cut(bad, "=")
		key := strings.ToLower(strings.TrimPrefix(name, "FLUIDITY_AGENT_"))
		if !strings.Contains(stderr.String(), key) {
			t.Errorf("%s: %q does not name the key", bad, stderr.String())
		}
	}
}

// getStatus fetches the agent's /status.json.
func getStatus(t *testing.T, admin string) (status.Snapshot, error) {
	t.Helper()
	var snap status.Snapshot
	resp, err := http.Get("http://" + admin + "/status.json")
	if err != nil {
		return snap, err
	}
	defer resp.Body.Close()
	return snap, json.NewDecoder(resp.Body).Decode(&snap)
}

// TestAgentStatusWaking: while Wake says the server is starting, the status
// says waking, for how long and in what state; then connected.
func TestAgentStatusWaking(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, cliFiles := writeCerts(t, dir)
	serverPort := startServer(t, ca, srvCert)
	api := newFakeLifecycleAPI(t, "127.0.0.1:"+strconv.Itoa(serverPort))
	api.starting.Store(true)
	admin := "127.0.0.1:" + strconv.Itoa(awstest.FreePort(t))
	logs, _ := runAgent(t, []string{
		"--local-proxy-port", strconv.Itoa(awstest.FreePort(t)), "--admin-listen", admin,
		"--cert-file", cliFiles[0], "--key-file", cliFiles[1], "--ca-cert-file", filepath.Join(dir, "ca.crt"),
		"--lifecycle-api-endpoint", api.URL, "--lifecycle-api-key", "test-key", "--lifecycle-kill-on-exit=false",
		"--lifecycle-wake-mode", "on_start", "--lifecycle-poll-interval", "100ms",
	})
	wait := func(what string, ok func(status.Snapshot) bool) status.Snapshot {
		t.Helper()
		var snap status.Snapshot
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if snap, err = getStatus(t, admin); err == nil && ok(snap) {
				return snap
			}
		}
		t.Fatalf("status never %s (last %+v, %v); log:\n%s", what, snap, err, logs.String())
		return snap
	}
	snap := wait("waking for a while", func(s status.Snapshot) bool {
		return s.State == status.StateWaking && s.Wake != nil && s.Wake.ElapsedSeconds >= 1
	})
	if snap.Up || !snap.Wake.Waking || snap.Wake.State != "starting" || !strings.Contains(snap.Reason, "starting") {
		t.Errorf("waking: %+v, wake %+v", snap, *snap.Wake)
	}
	api.starting.Store(false)
	snap = wait("connected", func(s status.Snapshot) bool { return s.State == status.StateConnected })
	if snap.Wake.Waking || snap.Wake.State != "running" || snap.Wake.Address == "" {
		t.Errorf("after the wake-up: wake %+v", *snap.Wake)
	}
}
