package main

import (
	"bytes"
	"crypto/x509"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// runCLI runs the command line and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

// snapshot returns the contents of every file in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(data)
	}
	return files
}

func verifies(t *testing.T, dir, name string, usage x509.ExtKeyUsage) {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.LoadKeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s does not verify against ca.crt: %v", name, err)
	}
}

func TestCertsDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errOut := runCLI(t, "certs", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := []string{"ca.crt", "ca.key", "server.crt", "server.key", "agent.crt", "agent.key"}
	files := snapshot(t, dir)
	if len(files) != len(want) {
		t.Errorf("files = %v, want exactly %v", slices.Sorted(maps.Keys(files)), want)
	}
	for _, name := range want {
		if _, ok := files[name]; !ok {
			t.Errorf("%s not written", name)
		}
		if !strings.Contains(out, "wrote  "+filepath.Join(dir, name)) {
			t.Errorf("output does not report writing %s:\n%s", name, out)
		}
		if runtime.GOOS == "windows" {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		wantMode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			wantMode = 0o600
		}
		if fi.Mode().Perm() != wantMode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), wantMode)
		}
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("created directory: %v (%v), want mode 0700", fi, err)
		}
	}
	verifies(t, dir, "server", x509.ExtKeyUsageServerAuth)
	verifies(t, dir, "agent", x509.ExtKeyUsageClientAuth)

	srv, err := pki.LoadKeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Cert.VerifyHostname(pki.DefaultServerName); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	cli, err := pki.LoadKeyPair(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	if cli.Cert.Subject.CommonName != "agent" {
		t.Errorf("client CN = %q, want agent", cli.Cert.Subject.CommonName)
	}
}

func TestCertsIdempotent(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "certs", "--dir", dir); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, errOut)
	}
	before := snapshot(t, dir)
	code, out, errOut := runCLI(t, "certs", "--dir", dir)
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, errOut)
	}
	if !maps.Equal(before, snapshot(t, dir)) {
		t.Error("second run changed files")
	}
	if strings.Contains(out, "wrote") {
		t.Errorf("second run reports writing:\n%s", out)
	}
	for name := range before {
		if !strings.Contains(out, "kept   "+filepath.Join(dir, name)) {
			t.Errorf("second run does not report keeping %s:\n%s", name, out)
		}
	}
}

func TestCertsIssuesMissingWithExistingCA(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "certs", "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	before := snapshot(t, dir)
	for _, f := range []string{"agent.crt", "agent.key"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "certs", "--dir", dir, "--client", "agent", "--client", "laptop")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	after := snapshot(t, dir)
	for _, f := range []string{"ca.crt", "ca.key", "server.crt", "server.key"} {
		if before[f] != after[f] {
			t.Errorf("%s changed", f)
		}
	}
	for _, f := range []string{"agent.crt", "laptop.crt", "laptop.key"} {
		if !strings.Contains(out, "wrote  "+filepath.Join(dir, f)) {
			t.Errorf("output does not report writing %s:\n%s", f, out)
		}
	}
	verifies(t, dir, "agent", x509.ExtKeyUsageClientAuth)
	verifies(t, dir, "laptop", x509.ExtKeyUsageClientAuth)
}

func TestCertsForce(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "certs", "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "certs", "--dir", dir, "--client", "laptop"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	before := snapshot(t, dir)
	code, out, errOut := runCLI(t, "certs", "--dir", dir, "--force")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "laptop.crt was issued by the previous CA") {
		t.Errorf("no warning about the orphaned laptop certificate: %q", errOut)
	}
	// laptop.* is not regenerated (not asked for); everything else must be.
	delete(before, "laptop.crt")
	delete(before, "laptop.key")
	after := snapshot(t, dir)
	for name := range before {
		if before[name] == after[name] {
			t.Errorf("--force kept %s", name)
		}
	}
	if strings.Contains(out, "kept") {
		t.Errorf("--force reports keeping files:\n%s", out)
	}
	verifies(t, dir, "server", x509.ExtKeyUsageServerAuth)
	verifies(t, dir, "agent", x509.ExtKeyUsageClientAuth)
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, "ca.key"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("ca.key after --force: %v (%v), want mode 0600", fi, err)
		}
	}
}

func TestCertsSANs(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI(t, "certs", "--dir", dir, "--server-name", "tunnel-srv",
		"--san", "tunnel.example.com", "--san", "203.0.113.7,2001:db8::1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	srv, err := pki.LoadKeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"tunnel-srv", "tunnel.example.com", "203.0.113.7", "2001:db8::1"} {
		if err := srv.Cert.VerifyHostname(h); err != nil {
			t.Errorf("server certificate does not cover %s: %v", h, err)
		}
	}
	if srv.Cert.VerifyHostname(pki.DefaultServerName) == nil {
		t.Errorf("server certificate covers the default name despite --server-name")
	}
	if len(srv.Cert.IPAddresses) != 2 || !srv.Cert.IPAddresses[0].Equal(net.ParseIP("203.0.113.7")) {
		t.Errorf("IP SANs = %v", srv.Cert.IPAddresses)
	}

	// Asking for a name the kept certificate lacks must not pass silently.
	before := snapshot(t, dir)
	code, _, errOut = runCLI(t, "certs", "--dir", dir, "--server-name", "tunnel-srv", "--san", "other.example.com")
	if code == 0 || !strings.Contains(errOut, "other.example.com") {
		t.Errorf("exit %d, stderr %q; want a failure naming the missing SAN", code, errOut)
	}
	if !maps.Equal(before, snapshot(t, dir)) {
		t.Error("failed run changed files")
	}
}

func TestCertsRefusesInconsistentState(t *testing.T) {
	tests := []struct {
		name   string
		remove []string
		want   string
	}{
		{"ca key missing", []string{"ca.key"}, "ca.key"},
		{"client key missing", []string{"agent.key"}, "agent.key"},
		{"server cert missing", []string{"server.crt"}, "server.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if code, _, errOut := runCLI(t, "certs", "--dir", dir); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, f := range tt.remove {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, dir)
			code, _, errOut := runCLI(t, "certs", "--dir", dir)
			if code != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 naming %s", code, errOut, tt.want)
			}
			if !maps.Equal(before, snapshot(t, dir)) {
				t.Error("failed run changed files")
			}
			if code, _, errOut := runCLI(t, "certs", "--dir", dir, "--force"); code != 0 {
				t.Errorf("--force did not recover: exit %d: %s", code, errOut)
			}
		})
	}
}

func TestCertsRefusesLeafFromAnotherCA(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "certs", "--dir", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Losing the CA and making a new one would orphan the kept leaves.
	for _, f := range []string{"ca.crt", "ca.key"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	code, _, errOut := runCLI(t, "certs", "--dir", dir)
	if code != 1 || !strings.Contains(errOut, "server.crt is not valid") {
		t.Errorf("exit %d, stderr %q; want exit 1 about server.crt", code, errOut)
	}
}

func TestCertsBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"path traversal", []string{"--client", "../evil"}, `"../evil"`},
		{"slash", []string{"--client", "a/b"}, `"a/b"`},
		{"empty", []string{"--client", ""}, "--client"},
		{"leading dot", []string{"--client", ".hidden"}, `".hidden"`},
		{"space", []string{"--client", "my laptop"}, `"my laptop"`},
		{"collides with ca", []string{"--client", "ca"}, "reserved"},
		{"collides with server", []string{"--client", "Server"}, "reserved"},
		{"windows device", []string{"--client", "nul"}, "reserved"},
		{"duplicate", []string{"--client", "a", "--client", "A"}, "twice"},
		{"too long", []string{"--client", strings.Repeat("a", 65)}, "1-64"},
		{"bad server name", []string{"--server-name", "no spaces"}, "--server-name"},
		{"bad san", []string{"--san", "bad_name!"}, "--san"},
		{"empty dir", []string{"--dir", ""}, "--dir"},
		{"unknown flag", []string{"--nope"}, "unknown flag"},
		{"positional", []string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			code, out, errOut := runCLI(t, append([]string{"certs", "--dir", dir}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q does not mention %q", errOut, tt.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("rejected command created %s", dir)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrOut string
	}{
		{"version", []string{"version"}, 0, "fluidity " + buildinfo.String() + "\n", ""},
		{"--version", []string{"--version"}, 0, "fluidity " + buildinfo.String() + "\n", ""},
		{"--help", []string{"--help"}, 0, "fluidity certs", ""},
		{"-h", []string{"-h"}, 0, "fluidity version", ""},
		{"help", []string{"help"}, 0, "fluidity certs", ""},
		{"certs --help", []string{"certs", "--help"}, 0, "--client", ""},
		{"help certs", []string{"help", "certs"}, 0, "--server-name", ""},
		{"no command", nil, 2, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"--frobnicate"}, 2, "", "unknown flag"},
		{"version with argument", []string{"version", "x"}, 2, "", "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if !strings.Contains(out, tt.wantOut) || (tt.wantOut == "" && out != "") {
				t.Errorf("stdout %q, want it to contain %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErrOut) || (tt.wantErrOut == "" && errOut != "") {
				t.Errorf("stderr %q, want it to contain %q", errOut, tt.wantErrOut)
			}
		})
	}
}

func TestCheckClientName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"agent", true},
		{"alice-laptop", true},
		{"ci_runner.2", true},
		{"A1", true},
		{"", false},
		{"-rf", false},
		{"a..b", false},
		{"trailing.", false},
		{"con.txt", false},
		{"ca", false},
		{`back\slash`, false},
		{"colon:name", false},
	}
	for _, tt := range tests {
		if err := checkClientName(tt.name); (err == nil) != tt.ok {
			t.Errorf("checkClientName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
