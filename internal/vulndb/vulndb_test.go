package vulndb

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBuild(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "db")
	notBefore := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	n, err := Build("testdata/osv", dst, notBefore)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Build: %d entries, want 2", n)
	}

	var meta dbMeta
	readJSON(t, filepath.Join(dst, "index", "db.json"), &meta)
	if want := time.Date(2099, 3, 4, 5, 6, 7, 0, time.UTC); !meta.Modified.Equal(want) {
		t.Errorf("db.json modified %v, want the newest entry's %v", meta.Modified, want)
	}

	var mods []module
	readJSON(t, filepath.Join(dst, "index", "modules.json"), &mods)
	want := []module{
		{Path: "example.com/mod", Vulns: []moduleVuln{{ID: "GO-2099-0002", Modified: time.Date(2099, 3, 4, 5, 6, 7, 0, time.UTC)}}},
		{Path: "stdlib", Vulns: []moduleVuln{{ID: "GO-2099-0001", Modified: notBefore}}},
		{Path: "toolchain", Vulns: []moduleVuln{{ID: "GO-2099-0001", Modified: notBefore}}},
	}
	if len(mods) != len(want) {
		t.Fatalf("modules.json: %+v, want %+v", mods, want)
	}
	for i := range want {
		if mods[i].Path != want[i].Path || len(mods[i].Vulns) != 1 ||
			mods[i].Vulns[0].ID != want[i].Vulns[0].ID || !mods[i].Vulns[0].Modified.Equal(want[i].Vulns[0].Modified) {
			t.Errorf("modules.json[%d] = %+v, want %+v", i, mods[i], want[i])
		}
	}

	var vulns []vuln
	readJSON(t, filepath.Join(dst, "index", "vulns.json"), &vulns)
	if len(vulns) != 2 || vulns[0].ID != "GO-2099-0001" || len(vulns[0].Aliases) != 1 || vulns[1].ID != "GO-2099-0002" {
		t.Errorf("vulns.json = %+v", vulns)
	}

	// Entries are copied as they are: govulncheck reads the ranges and symbols.
	for _, id := range []string{"GO-2099-0001", "GO-2099-0002"} {
		got, err := os.ReadFile(filepath.Join(dst, "ID", id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(filepath.Join("testdata", "osv", id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(src) {
			t.Errorf("ID/%s.json differs from its source", id)
		}
	}

	// A second build replaces the first whole.
	if err := os.WriteFile(filepath.Join(dst, "ID", "stale.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Build("testdata/osv", dst, notBefore); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "ID", "stale.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rebuild kept a stale entry: %v", err)
	}
}

func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  error
	}{
		{name: "no entries", files: map[string]string{"README.md": "x"}, want: ErrNoEntries},
		{name: "name differs from id", files: map[string]string{"GO-1.json": `{"id":"GO-2"}`}},
		{name: "not json", files: map[string]string{"GO-1.json": `{"id":`}},
		{name: "no id", files: map[string]string{"GO-1.json": `{"summary":"x"}`}},
		{name: "package without name", files: map[string]string{"GO-1.json": `{"id":"GO-1","affected":[{"package":{}}]}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			dst := filepath.Join(t.TempDir(), "db")
			_, err := Build(src, dst, time.Time{})
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Build: %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed build left %s: %v", dst, err)
			}
		})
	}
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
