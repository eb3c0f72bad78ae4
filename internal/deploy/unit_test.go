package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"full", Config{Name: "my-tunnel", Image: "x/y:1", Arch: "amd64", AllowedCidr: "198.51.100.0/24"}, true},
		{"name with capitals", Config{Name: "Fluidity"}, false},
		{"name too long", Config{Name: strings.Repeat("a", 21)}, false},
		{"image and layout", Config{Image: "x/y:1", ImageLayout: "dir"}, false},
		{"arch", Config{Arch: "riscv64"}, false},
		{"cidr", Config{AllowedCidr: "10.0.0.0"}, false},
		{"poll", Config{PollInterval: -1}, false},
		{"metrics interval", Config{MetricsInterval: 90 * time.Second}, true},
		{"metrics interval under a second", Config{MetricsInterval: 500 * time.Millisecond}, false},
		{"metrics interval in fractions", Config{MetricsInterval: 1500 * time.Millisecond}, false},
		{"metrics interval negative", Config{MetricsInterval: -time.Minute}, false},
		{"metrics interval past the idle threshold", Config{MetricsInterval: 15 * time.Minute}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNoChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		reason string
		want   bool
	}{
		{nil, "The submitted information didn't contain changes. Submit different information to create a change set.", true},
		{nil, "No updates are to be performed.", true},
		{nil, "Parameter validation failed: parameter value vpc-1 for parameter name VpcId does not exist", false},
		{&smithy.GenericAPIError{Code: "ValidationError", Message: "No updates are to be performed."}, "", true},
		{&smithy.GenericAPIError{Code: "ValidationError", Message: "Template format error"}, "", false},
		{&smithy.GenericAPIError{Code: "AccessDenied", Message: "No updates are to be performed."}, "", false},
	}
	for _, tc := range tests {
		if got := noChanges(tc.err, tc.reason); got != tc.want {
			t.Errorf("noChanges(%v, %q) = %v, want %v", tc.err, tc.reason, got, tc.want)
		}
	}
}

func TestSameParam(t *testing.T) {
	t.Parallel()
	tests := []struct {
		have, want string
		same       bool
	}{
		{"a", "a", true},
		{"subnet-1,subnet-2", "subnet-1,subnet-2", true},
		{"['subnet-1', 'subnet-2']", "subnet-1,subnet-2", true},
		{"['subnet-1']", "subnet-1,subnet-2", false},
		{"0", "1", false},
	}
	for _, tc := range tests {
		if got := sameParam(tc.have, tc.want); got != tc.same {
			t.Errorf("sameParam(%q, %q) = %v", tc.have, tc.want, got)
		}
	}
}

func TestWriteAgentConfig(t *testing.T) {
	t.Parallel()
	res := Result{APIEndpoint: "https://abc.execute-api.eu-west-1.amazonaws.com/prod", APIKey: "k3y"}
	t.Run("merges into an existing file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "agent.yaml")
		orig := "# my agent\nlocal_proxy_port: 3128 # not the default\nlifecycle:\n  wake_mode: on_demand\n  api_key: old\n"
		if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteAgentConfig(path, res, "certs"); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		got := string(b)
		for _, want := range []string{"# my agent", "local_proxy_port: 3128 # not the default", "wake_mode: on_demand",
			`api_key: "k3y"`, `api_endpoint: "` + res.APIEndpoint + `"`} {
			if !strings.Contains(got, want) {
				t.Errorf("agent.yaml lacks %q:\n%s", want, got)
			}
		}
		if strings.Contains(got, "old") {
			t.Errorf("old key kept:\n%s", got)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600 (it holds the key)", fi.Mode().Perm())
		}
	})
	t.Run("creates a new file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "agent.yaml")
		if err := WriteAgentConfig(path, res, filepath.Join(dir, "certs")); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		for _, want := range []string{"cert_file: ", filepath.Join(dir, "certs", "agent.crt"), "lifecycle:", `api_key: "k3y"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("agent.yaml lacks %q:\n%s", want, b)
			}
		}
	})
	t.Run("refuses a result without a key", func(t *testing.T) {
		t.Parallel()
		if err := WriteAgentConfig(filepath.Join(t.TempDir(), "a.yaml"), Result{APIEndpoint: "x"}, "certs"); err == nil {
			t.Error("wrote a config without a key")
		}
	})
}
