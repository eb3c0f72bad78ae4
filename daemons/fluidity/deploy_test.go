//go:build !fluidity_nodeploy

package main

import (
	"archive/zip"
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
)

func TestDeployUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		out  string // in stdout (help) or stderr (errors)
	}{
		{"deploy help", []string{"deploy", "--help"}, exitOK, "--dry-run"},
		{"destroy help", []string{"destroy", "--help"}, exitOK, "--yes"},
		{"no image", []string{"deploy", "--source-dir", t.TempDir(), "--lambda-dir", t.TempDir()}, exitUsage, "no server image"},
		{"image and layout", []string{"deploy", "--image", "x/y:1", "--image-layout", "d"}, exitUsage, "not both"},
		{"bad arch", []string{"deploy", "--image", "x/y:1", "--arch", "riscv64"}, exitUsage, "arch"},
		{"stray argument", []string{"destroy", "now"}, exitUsage, "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.out) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s%s", code, tc.code, tc.out, stdout, stderr)
			}
		})
	}
}

// The commands as a user runs them, on moto through the SDK's standard
// AWS_ENDPOINT_URL: a dry run, a deploy (which stops at moto's missing API
// key, see internal/deploy), a destroy answered "no", and one with --yes.
// The whole flow is tested in internal/deploy; this is the command line.
func TestDeployDestroyCommands(t *testing.T) {
	// Not parallel: the AWS settings are the process environment, as for a user.
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections) // moto's fixture proxy
	moto := awstest.StartMoto(t)
	for _, kv := range awstest.LambdaEnv(moto) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_PROFILE", "")
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if code, _, stderr := runCLI(t, "certs", "--dir", certs); code != exitOK {
		t.Fatalf("certs: %s", stderr)
	}
	lambdas := filepath.Join(dir, "lambdas")
	if err := os.Mkdir(lambdas, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"wake", "sleep", "kill"} {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.Create("bootstrap")
		_, _ = w.Write([]byte("not run here"))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lambdas, fn+".zip"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	common := []string{"--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/fluidity-server:v1",
		"--lambda-dir", lambdas, "--cert-dir", certs, "--arch", "amd64"}

	code, stdout, stderr := runCLI(t, append([]string{"deploy", "--dry-run"}, common...)...)
	if code != exitOK || !strings.Contains(stdout, "stack fluidity-server: would create") || !strings.Contains(stdout, "dry run: nothing was changed") {
		t.Fatalf("deploy --dry-run: exit %d\n%s%s", code, stdout, stderr)
	}

	agentYAML := filepath.Join(dir, "agent.yaml")
	code, stdout, stderr = runCLI(t, append([]string{"deploy", "--write-config", agentYAML}, common...)...)
	if code != exitError || !strings.Contains(stderr, "no ApiKeyId output") || !strings.Contains(stdout, "stack fluidity-control: CREATE_COMPLETE") {
		t.Fatalf("deploy on moto: exit %d, want 1 for moto's missing API key\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(agentYAML); err == nil {
		t.Error("agent.yaml written without a key")
	}

	stdin = strings.NewReader("no\n")
	t.Cleanup(func() { stdin = os.Stdin })
	code, stdout, _ = runCLI(t, "destroy")
	if code != exitError || !strings.Contains(stdout, "stack fluidity-server and every resource in it") || !strings.Contains(stdout, "nothing removed") {
		t.Fatalf("destroy answered no: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = runCLI(t, "destroy", "--yes")
	if code != exitOK || !strings.Contains(stdout, "bucket fluidity-artifacts-123456789012-us-east-1: deleted") {
		t.Fatalf("destroy --yes: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, _ = runCLI(t, "destroy", "--yes"); code != exitOK || !strings.Contains(stdout, "nothing of") {
		t.Errorf("destroy of nothing: exit %d\n%s", code, stdout)
	}
}
