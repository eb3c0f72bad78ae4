package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/service/*")

// goldenSpec is a typical installation, one per platform's paths.
func goldenSpec(goos string) serviceSpec {
	switch goos {
	case "darwin":
		return serviceSpec{
			Executable:  "/Users/me/go/bin/fluidity-agent",
			Config:      "/Users/me/.config/fluidity/agent.yaml",
			LogFile:     "/Users/me/Library/Logs/fluidity-agent.log",
			StopTimeout: 45 * time.Second,
		}
	case "windows":
		return serviceSpec{
			Executable:  `C:\Program Files\Fluidity\fluidity-agent.exe`,
			Config:      `C:\Users\me\fluidity\agent.yaml`,
			StopTimeout: 45 * time.Second,
		}
	}
	return serviceSpec{
		Executable:  "/home/me/.local/bin/fluidity-agent",
		Config:      "/home/me/.config/fluidity/agent.yaml",
		StopTimeout: 45 * time.Second,
	}
}

// TestServiceDefinitionsGolden: what `service install` writes on each platform
// (the systemd unit, the LaunchAgent plist, the Windows service's settings) is
// the reviewed file in testdata/service. -update-golden rewrites them.
func TestServiceDefinitionsGolden(t *testing.T) {
	for _, tc := range []struct{ goos, file string }{
		{"linux", "fluidity-agent.service"},
		{"darwin", "com.github.fluidity-tunnel.agent.plist"},
		{"windows", "windows-service.json"},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			cfg, err := serviceConfig(tc.goos, goldenSpec(tc.goos))
			if err != nil {
				t.Fatal(err)
			}
			got := describeService(tc.goos, cfg)
			path := filepath.Join("testdata", "service", tc.file)
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s differs from what install writes (go test ./daemons/agent -run Golden -update-golden); got:\n%s", path, got)
			}
		})
	}
}

// TestLaunchdPlistIsXML: the plist parses, with paths that need escaping, and
// carries them back unchanged.
func TestLaunchdPlistIsXML(t *testing.T) {
	spec := goldenSpec("darwin")
	spec.Config = `/Users/me/A & B <"x'y">/agent.yaml`
	dec := xml.NewDecoder(strings.NewReader(launchdPlist(spec)))
	dec.Strict = true
	var texts []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the plist is not well-formed XML: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{spec.Config, filepath.Dir(spec.Config), spec.Executable} {
		if !strings.Contains(all, want) {
			t.Errorf("the plist does not carry %q", want)
		}
	}
}

// writeAgentConfig writes certificates and an agent.yaml naming them by
// relative paths (relative to the configuration's directory under a service)
// into dir, starts a server for them, and returns the configuration's path.
func writeAgentConfig(t *testing.T, dir string, proxyPort int) string {
	t.Helper()
	ca, srv, _ := writeCerts(t, dir)
	serverPort := startServer(t, ca, srv)
	path := filepath.Join(dir, "agent.yaml")
	yaml := fmt.Sprintf("server_ip: 127.0.0.1\nserver_port: %d\nlocal_proxy_port: %d\nadmin_listen: \"\"\n"+
		"cert_file: agent.crt\nkey_file: agent.key\nca_cert_file: ca.crt\nshutdown_timeout: 5s\n", serverPort, proxyPort)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemdUnitVerifies: systemd's own checker accepts the unit that install
// writes, for paths with spaces, quotes, % and $ (which systemd would expand),
// and reports nothing. The real-systemd test below runs it too.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed (Debian package systemd; scripts/ci-deps.sh installs it): %v", err)
	}
	for _, tc := range []struct{ name, exeDir, confDir string }{
		{"plain", "bin", "conf"},
		// systemd refuses quotes in a program's path (see the test below), not in its arguments.
		{"special", "a b 100% $HOME", `a b "c" 'd' \e 100% $HOME`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			exeDir, confDir := filepath.Join(root, tc.exeDir), filepath.Join(root, tc.confDir)
			for _, d := range []string{exeDir, confDir} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			exe := filepath.Join(exeDir, "fluidity-agent")
			if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			conf := writeAgentConfig(t, confDir, 8080)
			unit, err := systemdUnit(serviceSpec{Executable: exe, Config: conf, StopTimeout: 45 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			verifyUnit(t, analyze, unit)
		})
	}
	if _, err := systemdUnit(serviceSpec{Executable: `/opt/"x"/fluidity-agent`, Config: "/etc/agent.yaml"}); err == nil {
		t.Error("a program path with quotes made a unit; systemd would refuse it")
	}
}

func verifyUnit(t *testing.T, analyze, unit string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, serviceName+".service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	runtimeDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--user", path)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir, "HOME="+dir)
	out, err := cmd.CombinedOutput()
	// verify exits 0 on warnings such as an unknown key: any output fails.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify --user: %v\n%s\nunit:\n%s", err, out, unit)
	}
}

// TestSystemdQuote: what systemd reads back from a quoted word is the word.
func TestSystemdQuote(t *testing.T) {
	for _, tc := range []struct {
		in   string
		arg  bool
		want string
	}{
		{"/usr/bin/fluidity-agent", false, `"/usr/bin/fluidity-agent"`},
		{`/a b/"c"\d`, true, `"/a b/\"c\"\\d"`},
		{"/100%/$HOME", true, `"/100%%/$$HOME"`},
		{"/100%/$HOME", false, `"/100%%/$HOME"`}, // the program's path is not expanded
	} {
		got, err := systemdQuote(tc.in, tc.arg)
		if err != nil || got != tc.want {
			t.Errorf("systemdQuote(%q, %v) = %q, %v; want %q", tc.in, tc.arg, got, err, tc.want)
		}
	}
	if _, err := systemdQuote("/a\nb", true); err == nil {
		t.Error("a line break was quoted; want an error")
	}
}

// TestServiceInstallValidates: install refuses a configuration the service
// could not run with, naming the problem, before touching the service manager.
func TestServiceInstallValidates(t *testing.T) {
	dir := t.TempDir()
	good := writeAgentConfig(t, dir, 8080)
	missingCert := filepath.Join(dir, "missing-cert.yaml")
	if err := os.WriteFile(missingCert, []byte("server_ip: 127.0.0.1\ncert_file: nope.crt\nkey_file: agent.key\nca_cert_file: ca.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("server_ip: 127.0.0.1\nserver_port: 0\ncert_file: agent.crt\nkey_file: agent.key\nca_cert_file: ca.crt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no config", []string{"install"}, 2, "needs --config"},
		{"no action", nil, 2, "want one of"},
		{"unknown action", []string{"reload"}, 2, "unknown action"},
		{"config on start", []string{"start", "--config", good}, 2, "belong to install"},
		{"missing file", []string{"install", "--config", filepath.Join(dir, "none.yaml")}, 1, "none.yaml"},
		{"invalid key", []string{"install", "--config", invalid}, 1, "server_port"},
		{"missing certificate", []string{"install", "--config", missingCert}, 1, "nope.crt"},
		{"go run binary", []string{"install", "--dry-run", "--config", good}, 1, "temporary binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(t.Context(), append([]string{"service"}, tc.args...), nil, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("service %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
			}
		})
	}
	// The test binary lives in a go-build directory; the last case shows the
	// configuration passed every check before that one.
}
