package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartErrorsNameTheKey: a missing file and a mistyped environment variable
// stop the agent with exit status 2 and a line naming what to fix, as the
// README promises for any invalid value.
func TestStartErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crt, key, ca := file("agent.crt"), file("agent.key"), file("ca.crt")
	missing := filepath.Join(dir, "missing.pem")
	base := func(cert, k, c string) []string {
		return []string{"--server-ip", "127.0.0.1", "--cert-file", cert, "--key-file", k, "--ca-cert-file", c}
	}
	tests := []struct {
		name    string
		args    []string
		environ []string
		want    []string
	}{
		{"cert_file", base(missing, key, ca), nil, []string{"config: cert_file: ", missing}},
		{"key_file", base(crt, missing, ca), nil, []string{"config: key_file: ", missing}},
		{"ca_cert_file", base(crt, key, missing), nil, []string{"config: ca_cert_file: ", missing}},
		{"credentials file", append(base(crt, key, ca), "--upstream-proxy", "http://127.0.0.1:3128", "--upstream-proxy-credentials-file", missing),
			nil, []string{"config: upstream_proxy_credentials_file: "}},
		{"mistyped variable", base(crt, key, ca), []string{"FLUIDITY_AGENT_SOCKS_PROT=1080"},
			[]string{"config: FLUIDITY_AGENT_SOCKS_PROT: unknown variable", "did you mean FLUIDITY_AGENT_SOCKS_PORT?"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, tc.environ, &stdout, &stderr); code != 2 {
				t.Fatalf("exit status %d, want 2; stderr:\n%s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
			if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
				t.Errorf("stderr has %d lines, want one:\n%s", n+1, stderr.String())
			}
		})
	}
}
