package scripts

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const epoch = 1700000000 // SOURCE_DATE_EPOCH of the test's release

// release runs release.sh on fake binaries (NOBUILD=1) for one tar.gz and one
// zip platform, and returns $DIST.
func release(t *testing.T, dist string) {
	t.Helper()
	for _, p := range []struct{ dir, ext string }{{"linux-amd64", ""}, {"windows-amd64", ".exe"}} {
		for _, name := range []string{"fluidity-agent", "fluidity-server", "fluidity"} {
			path := filepath.Join(dist, "build", p.dir, name+p.ext)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			// Contents and times vary between the runs' inputs only in their times.
			if err := os.WriteFile(path, []byte("binary "+name+" "+p.dir), 0o700); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if err := os.Chtimes(path, now, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command("./release.sh")
	cmd.Env = append(os.Environ(), "NOBUILD=1", "DIST="+dist, "VERSION=v1.2.3",
		"PLATFORMS=linux/amd64 windows/amd64", "SOURCE_DATE_EPOCH=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, out)
	}
}

// TestReleaseArchives: one archive per platform with the binaries, README,
// LICENSE and example configurations; checksums that sha256sum -c accepts;
// entries sorted, at the commit's time, owned by 0/0 without names; and the
// same bytes from a second run whose inputs have other times.
func TestReleaseArchives(t *testing.T) {
	if _, err := exec.LookPath("zip"); err != nil {
		t.Fatalf("zip is needed (scripts/ci-deps.sh installs it): %v", err)
	}
	dist := t.TempDir()
	release(t, dist)

	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	for _, name := range []string{"fluidity_v1.2.3_linux_amd64.tar.gz", "fluidity_v1.2.3_windows_amd64.zip"} {
		if !strings.Contains(string(sums), "  "+name+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", name, sums)
		}
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := func(dir, ext string) []string { // in byte order, as release.sh sorts them
		return slices.Sorted(slices.Values([]string{dir + "/", dir + "/LICENSE", dir + "/README.md", dir + "/examples/", dir + "/examples/agent.yaml",
			dir + "/examples/server.yaml", dir + "/fluidity" + ext, dir + "/fluidity-agent" + ext, dir + "/fluidity-server" + ext}))
	}

	t.Run("tar.gz", func(t *testing.T) {
		f, err := os.Open(filepath.Join(dist, "fluidity_v1.2.3_linux_amd64.tar.gz"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if gz.Name != "" || !gz.ModTime.IsZero() {
			t.Errorf("gzip header carries name %q, time %v", gz.Name, gz.ModTime)
		}
		tr := tar.NewReader(gz)
		var names []string
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			if h.ModTime.Unix() != epoch || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
				t.Errorf("%s: time %v, owner %d/%d %q/%q; want the epoch, 0/0, no names", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
			}
			mode := int64(0o644)
			if h.Typeflag == tar.TypeDir || strings.HasPrefix(filepath.Base(h.Name), "fluidity") {
				mode = 0o755
			}
			if h.Mode&0o777 != mode {
				t.Errorf("%s: mode %o, want %o", h.Name, h.Mode&0o777, mode)
			}
			body, _ := io.ReadAll(tr)
			if strings.HasSuffix(h.Name, "/README.md") && !bytes.Equal(body, readme) {
				t.Errorf("%s is not the README", h.Name)
			}
		}
		if w := want("fluidity_v1.2.3_linux_amd64", ""); !slices.Equal(names, w) {
			t.Errorf("entries %q, want %q (sorted)", names, w)
		}
	})

	t.Run("zip", func(t *testing.T) {
		zr, err := zip.OpenReader(filepath.Join(dist, "fluidity_v1.2.3_windows_amd64.zip"))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			// Zip's own times are local; release.sh writes them in UTC, as Go reads them.
			if !f.Modified.Equal(time.Unix(epoch, 0)) {
				t.Errorf("%s: time %v, want %v", f.Name, f.Modified, time.Unix(epoch, 0).UTC())
			}
			if len(f.Extra) != 0 {
				t.Errorf("%s: extra fields %x (owners, times) in the zip", f.Name, f.Extra)
			}
		}
		w := slices.DeleteFunc(want("fluidity_v1.2.3_windows_amd64", ".exe"), func(n string) bool { return strings.HasSuffix(n, "/") })
		if !slices.Equal(names, w) {
			t.Errorf("entries %q, want %q (sorted)", names, w)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		again := t.TempDir()
		release(t, again)
		sums2, err := os.ReadFile(filepath.Join(again, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sums, sums2) {
			t.Errorf("a second release of the same inputs differs:\n%s\n%s", sums, sums2)
		}
	})
}
