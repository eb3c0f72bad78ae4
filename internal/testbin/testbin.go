// Package testbin builds the project's own programs for tests that run them as
// real processes (end-to-end, fault injection, Lambda emulation).
package testbin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleRoot returns the directory holding the module's go.mod, as the go
// command sees it from the current directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := string(bytes.TrimSpace(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// Build compiles each package (a path relative to the module root, such as
// "./daemons/agent") into dir under the given file name, as a static binary
// (CGO_ENABLED=0, as the Makefile builds it, though without its -ldflags: the
// version stays "dev" and symbols stay in) and without the race detector even
// when the tests run with it, so that measured memory and timings are those of
// shipped code.
// extraEnv and extraArgs (e.g. GOOS, -tags) apply to every build.
func Build(dir string, binaries map[string]string, extraEnv []string, extraArgs ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	for name, pkg := range binaries {
		args := append([]string{"build", "-trimpath"}, extraArgs...)
		args = append(args, "-o", filepath.Join(dir, name), pkg)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), extraEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return nil
}

// Deps lists the import paths of the package in dir and of everything it
// imports, directly or not (`go list -deps`), with extraEnv (e.g. GOOS) and
// extraArgs (e.g. -tags) given to the go command: what a binary built from it
// links. Test-only imports do not count.
func Deps(dir string, extraEnv []string, extraArgs ...string) ([]string, error) {
	args := append(append([]string{"list", "-deps"}, extraArgs...), ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), extraEnv...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("go %v: %w\n%s", args, err, ee.Stderr)
		}
		return nil, fmt.Errorf("go %v: %w", args, err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		return nil, fmt.Errorf("go %v listed nothing", args)
	}
	return deps, nil
}
