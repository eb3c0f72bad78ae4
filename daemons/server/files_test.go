package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingFileNamesTheKey: a certificate file that is not there stops the
// server with exit status 2 and the key at fault, before anything listens.
func TestMissingFileNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.pem")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, key := range []string{"cert_file", "key_file", "ca_cert_file"} {
		t.Run(key, func(t *testing.T) {
			args := []string{"--listen-port", "0"}
			for _, k := range []string{"cert_file", "key_file", "ca_cert_file"} {
				path := present
				if k == key {
					path = missing
				}
				args = append(args, "--"+strings.ReplaceAll(k, "_", "-"), path)
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), args, nil, &stdout, &stderr); code != 2 {
				t.Fatalf("exit status %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if got := stderr.String(); !strings.Contains(got, "config: "+key+": ") || !strings.Contains(got, missing) {
				t.Errorf("stderr %q, want the key %s and the path", got, key)
			}
		})
	}
}
