package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	dist := t.TempDir()
	for _, name := range []string{"fluidity-server-linux-amd64", "fluidity-server-linux-arm64", "fluidity-agent-linux-amd64", "fluidity-agent-linux-arm64", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dist, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	build := func(out string) string {
		var stdout, stderr bytes.Buffer
		args := []string{"-dist", dist, "-out", out, "-version", "v9", "-revision", "abc", "-ca-bundle", filepath.Join(dist, "ca.crt")}
		if code := run(context.Background(), args, "1700000000", &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		return stdout.String()
	}
	out := filepath.Join(t.TempDir(), "images")
	first := build(out)
	for _, f := range []string{"fluidity-server.oci.tar", "fluidity-agent.oci.tar", "fluidity-server/index.json", "fluidity-agent/oci-layout"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if !strings.Contains(first, "fluidity-server:v9 sha256:") || !strings.Contains(first, "fluidity-agent:v9 sha256:") {
		t.Errorf("output %q does not name both images with digests", first)
	}
	// A second run into the same directory replaces the images, and builds the same digests.
	if again := build(out); again != first {
		t.Errorf("second build printed %q, first %q", again, first)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("ca"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		epoch string
		code  int
		want  string
	}{
		{"unknown flag", []string{"-nope"}, "", 2, "flag provided but not defined"},
		{"bad epoch", []string{"-ca-bundle", ca}, "yesterday", 1, "want Unix seconds"},
		{"bad platform", []string{"-ca-bundle", ca, "-platforms", "linux"}, "", 1, "want os/arch"},
		{"unknown image", []string{"-ca-bundle", ca, "-images", "lambda"}, "", 1, "unknown image"},
		{"no CA bundle", []string{"-ca-bundle", filepath.Join(dir, "none")}, "", 1, "CA bundle"},
		{"no binaries", []string{"-ca-bundle", ca, "-dist", dir, "-out", filepath.Join(dir, "out")}, "", 1, "fluidity-server-linux-amd64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, tc.epoch, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}
