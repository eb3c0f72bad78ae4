// Package vulndb turns the OSV entries that the golang.org/x/vulndb module ships
// (data/osv/GO-YYYY-NNNN.json) into a Go vulnerability database in the v1
// layout that `govulncheck -db file:///dir` reads: index/db.json,
// index/modules.json, index/vulns.json and ID/<id>.json.
//
// The module carries only the entries, not the index the public database
// serves, and its own generator (cmd/indexdb) links go-git and more: minutes of
// compiling from an empty cache for what is a few hundred lines of JSON work.
package vulndb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrNoEntries is returned when the source directory holds no OSV entry: an
// empty database would make every scan come out clean.
var ErrNoEntries = errors.New("vulndb: no OSV entries")

// entry is the part of an OSV entry the index needs.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type dbMeta struct {
	Modified time.Time `json:"modified"`
}

// moduleVuln leaves out the optional "fixed" version: govulncheck then reads
// every entry for a module it uses instead of skipping some, which is slower
// by milliseconds and can never hide a finding.
type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// Build reads every <id>.json under src and writes the v1 database into dst,
// which it replaces whole. Entries whose modified time is zero (the module's
// copies are: the public database fills it from git history) get notBefore,
// as does the database itself when no entry is later; pass the module
// version's time.
func Build(src, dst string, notBefore time.Time) (int, error) {
	names, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return 0, fmt.Errorf("vulndb: list %s: %w", src, err)
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("%w in %s", ErrNoEntries, src)
	}
	slices.Sort(names)

	// Written aside and renamed into place: an interrupted build leaves no
	// half database for the next run to trust.
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return 0, fmt.Errorf("vulndb: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	for _, d := range []string{"index", "ID"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o750); err != nil {
			return 0, fmt.Errorf("vulndb: %w", err)
		}
	}

	meta := dbMeta{Modified: notBefore.UTC()}
	modules := map[string]*module{}
	var vulns []vuln
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			return 0, fmt.Errorf("vulndb: %w", err)
		}
		e, err := decode(raw)
		if err != nil {
			return 0, fmt.Errorf("vulndb: %s: %w", filepath.Base(name), err)
		}
		if filepath.Base(name) != e.ID+".json" {
			return 0, fmt.Errorf("vulndb: %s holds entry %q", filepath.Base(name), e.ID)
		}
		if e.Modified.IsZero() {
			e.Modified = meta.Modified
		}
		if e.Modified.After(meta.Modified) {
			meta.Modified = e.Modified
		}
		vulns = append(vulns, vuln{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &module{Path: a.Package.Name}
				modules[a.Package.Name] = m
			}
			if !slices.ContainsFunc(m.Vulns, func(v moduleVuln) bool { return v.ID == e.ID }) {
				m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
			}
		}
		if err := os.WriteFile(filepath.Join(tmp, "ID", e.ID+".json"), raw, 0o600); err != nil { // #nosec G703 -- e.ID equals the name of a file in src (checked above) and holds no separator
			return 0, fmt.Errorf("vulndb: %w", err)
		}
	}

	mods := make([]*module, 0, len(modules))
	for _, m := range modules {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *module) int { return strings.Compare(a.Path, b.Path) })
	for name, v := range map[string]any{"db.json": meta, "modules.json": mods, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, fmt.Errorf("vulndb: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", name), b, 0o600); err != nil {
			return 0, fmt.Errorf("vulndb: %w", err)
		}
	}
	if err := os.RemoveAll(dst); err != nil {
		return 0, fmt.Errorf("vulndb: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, fmt.Errorf("vulndb: %w", err)
	}
	return len(vulns), nil
}

// decode parses one OSV entry and checks what the index relies on.
func decode(raw []byte) (entry, error) {
	var e entry
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&e); err != nil {
		return entry{}, fmt.Errorf("decode: %w", err)
	}
	// The id names a file of the database.
	if e.ID == "" || e.ID == "." || e.ID == ".." || strings.ContainsAny(e.ID, `/\`) {
		return entry{}, fmt.Errorf("bad id %q", e.ID)
	}
	for _, a := range e.Affected {
		if a.Package.Name == "" {
			return entry{}, fmt.Errorf("entry %s: affected package without a name", e.ID)
		}
	}
	return e, nil
}
