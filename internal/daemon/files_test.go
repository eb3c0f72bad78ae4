package daemon

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

type filesConfig struct {
	CertFile string `koanf:"cert_file" help:"certificate"`
	KeyFile  string `koanf:"key_file" help:"key"`
}

func (c *filesConfig) Files() []File {
	return []File{{Key: "cert_file", Path: c.CertFile}, {Key: "key_file", Path: c.KeyFile}}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.pem")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		files   []File
		wantKey string
	}{
		{"all present", []File{{"cert_file", present}, {"key_file", present}}, ""},
		{"unused setting", []File{{"cert_file", ""}, {"key_file", present}}, ""},
		{"missing", []File{{"cert_file", present}, {"key_file", missing}}, "key_file"},
		{"first missing wins", []File{{"cert_file", missing}, {"key_file", missing}}, "cert_file"},
		{"a directory opens", []File{{"cert_file", dir}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFiles(tc.files)
			var fe *config.FieldError
			switch {
			case tc.wantKey == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tc.wantKey != "" && (!errors.As(err, &fe) || fe.Key != tc.wantKey || !errors.Is(err, fs.ErrNotExist)):
				t.Fatalf("err = %v, want a not-exist error naming %s", err, tc.wantKey)
			}
		})
	}
}

// TestLoadChecksFiles: a missing certificate stops the command line with exit
// status 2 and one line naming the key and the path.
func TestLoadChecksFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "agent.crt")
	cmd := Command{Name: "fluidity-test", EnvPrefix: "FLUIDITY_TEST_"}
	var stdout, stderr bytes.Buffer
	cfg := &filesConfig{}
	done, code := cmd.Load([]string{"--cert-file", missing}, nil, cfg, &stdout, &stderr)
	if !done || code != 2 {
		t.Fatalf("Load = %v, %d; want done with exit status 2", done, code)
	}
	if got := stderr.String(); !strings.HasPrefix(got, "fluidity-test: config: cert_file: ") || !strings.Contains(got, missing) {
		t.Errorf("stderr %q, want one line naming cert_file and %s", got, missing)
	}
	cmd.SkipValidate = true
	if done, code := cmd.Load([]string{"--cert-file", missing}, nil, &filesConfig{}, &stdout, &stderr); done {
		t.Errorf("with SkipValidate: done with %d, want the files left unchecked", code)
	}
}
