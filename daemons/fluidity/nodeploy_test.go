package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The fluidity that `make run` builds (-tags fluidity_nodeploy) links no AWS
// SDK, so that a first `make run` compiles none of it, and says what to use
// when asked to deploy.
func TestNoDeployBuild(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	goCmd := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
			}
			t.Fatalf("go %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	deps := strings.Fields(string(goCmd("list", "-deps", "-tags", "fluidity_nodeploy", ".")))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/aws/") {
			t.Errorf("the fluidity_nodeploy build links %s", dep)
		}
	}

	bin := filepath.Join(t.TempDir(), "fluidity")
	goCmd("build", "-tags", "fluidity_nodeploy", "-o", bin, ".")
	for _, cmd := range []string{"deploy", "destroy"} {
		out, err := exec.Command(bin, cmd, "--yes").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitError {
			t.Errorf("fluidity %s: %v, want exit status %d\n%s", cmd, err, exitError, out)
		}
		if !strings.Contains(string(out), "built without deploy and destroy") || !strings.Contains(string(out), "bin/fluidity "+cmd) {
			t.Errorf("fluidity %s says:\n%s", cmd, out)
		}
	}
	dir := t.TempDir()
	if out, err := exec.Command(bin, "certs", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("fluidity certs: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err != nil {
		t.Errorf("fluidity certs made no CA: %v", err)
	}
}
