package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// The fluidity that `make run` builds (-tags fluidity_nodeploy) links no AWS
// SDK, so that a first `make run` compiles none of it, and says what to use
// when asked to deploy.
func TestNoDeployBuild(t *testing.T) {
	t.Parallel()
	deps, err := testbin.Deps(".", nil, "-tags", "fluidity_nodeploy")
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/aws/") {
			t.Errorf("the fluidity_nodeploy build links %s", dep)
		}
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "fluidity")
	if err := testbin.Build(dir, map[string]string{"fluidity": "./daemons/fluidity"}, nil, "-tags", "fluidity_nodeploy"); err != nil {
		t.Fatal(err)
	}
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
	certs := t.TempDir()
	if out, err := exec.Command(bin, "certs", "--dir", certs).CombinedOutput(); err != nil {
		t.Fatalf("fluidity certs: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(certs, "ca.crt")); err != nil {
		t.Errorf("fluidity certs made no CA: %v", err)
	}
}
