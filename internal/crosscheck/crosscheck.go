// Package crosscheck type-checks this module's packages as they build for
// other platforms, from source, without compiling anything.
//
// `make test` used to cross-build the agent for three more platforms. On an
// empty build cache each one compiles the standard library and every
// dependency again for its GOOS/GOARCH: about 300 s of CPU of a cold suite's
// 1,500. What the cross-builds guarded against is this tree's own
// platform-specific code (files with _windows, _linux, _other suffixes and
// build tags) not compiling somewhere; a type-check of every package the
// binaries import finds that. The dependencies are checked too, but only
// their declarations (function bodies skipped: they are their authors' to
// compile), which keeps a platform at a few seconds of CPU. `make build`,
// `make release` and the GitHub workflow's cross job still build every
// platform.
package crosscheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/fluidity-tunnel/fluidity/internal/platform"
)

// Error lists what did not type-check on one platform.
type Error struct {
	Platform platform.Platform
	Problems []string // "file:line:col: message", or a package's load error
}

func (e *Error) Error() string {
	return fmt.Sprintf("crosscheck: %s: %d problem(s):\n\t%s", e.Platform, len(e.Problems), strings.Join(e.Problems, "\n\t"))
}

// listed is what `go list -json` says of one package.
type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	ImportMap  map[string]string
	Standard   bool
	Module     *struct{ Main bool }
	Error      *struct{ Err string }
}

// Check type-checks the packages patterns name (go list patterns, relative to
// dir, a directory of the module) and everything they import, as built for p
// with cgo off. The main module's packages are checked in full; other
// packages' function bodies are skipped. It returns an *Error naming every
// problem found, or another error when go list itself cannot run.
func Check(ctx context.Context, dir string, p platform.Platform, patterns ...string) error {
	pkgs, err := list(ctx, dir, p, patterns)
	if err != nil {
		return err
	}
	sizes := types.SizesFor("gc", p.Arch)
	if sizes == nil {
		return fmt.Errorf("crosscheck: unknown GOARCH %q", p.Arch)
	}
	fset := token.NewFileSet()
	checked := map[string]*types.Package{"unsafe": types.Unsafe}
	var problems []string
	for _, lp := range pkgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if lp.ImportPath == "unsafe" {
			continue
		}
		if lp.Error != nil {
			problems = append(problems, lp.ImportPath+": "+lp.Error.Err)
			continue
		}
		own := lp.Module != nil && lp.Module.Main
		files, err := parse(fset, lp)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		conf := types.Config{
			Importer:         importer{checked, lp.ImportMap},
			Sizes:            sizes,
			IgnoreFuncBodies: !own,
			// Every error, not only the first: a person fixing a port wants the list.
			Error: func(err error) { problems = append(problems, err.Error()) },
		}
		pkg, _ := conf.Check(lp.ImportPath, fset, files, nil) // errors reach conf.Error
		checked[lp.ImportPath] = pkg
	}
	if len(problems) > 0 {
		return &Error{Platform: p, Problems: problems}
	}
	return nil
}

// list runs go list for the platform: the packages and all their
// dependencies, each after what it imports.
func list(ctx context.Context, dir string, p platform.Platform, patterns []string) ([]listed, error) {
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,Dir,GoFiles,ImportMap,Standard,Module,Error", "--"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...) //nolint:gosec // G204: the go command, with package patterns the caller gives
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Arch, "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("crosscheck: %s: go list: %w\n%s", p, err, stderr.Bytes())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var lp listed
		if err := dec.Decode(&lp); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("crosscheck: %s: go list output: %w", p, err)
		}
		pkgs = append(pkgs, lp)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("crosscheck: %s: go list found no packages for %q", p, patterns)
	}
	return pkgs, nil
}

func parse(fset *token.FileSet, lp listed) ([]*ast.File, error) {
	files := make([]*ast.File, 0, len(lp.GoFiles))
	for _, name := range lp.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(lp.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// importer resolves an import from the packages checked so far: go list
// -deps prints every package after its dependencies. ImportMap maps a path as
// written to the package it resolves to (vendored copies in the standard
// library).
type importer struct {
	checked map[string]*types.Package
	mapping map[string]string
}

func (im importer) Import(path string) (*types.Package, error) {
	if to, ok := im.mapping[path]; ok {
		path = to
	}
	if pkg := im.checked[path]; pkg != nil {
		return pkg, nil
	}
	return nil, fmt.Errorf("package %s was not loaded (or did not load)", path)
}
