package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fluidity-tunnel/fluidity/internal/image"
)

var (
	amd64 = image.Platform{OS: "linux", Arch: "amd64"}
	arm64 = image.Platform{OS: "linux", Arch: "arm64"}
)

// fakeBinaries writes one small file per platform; the images do not run them.
func fakeBinaries(t *testing.T, ps ...image.Platform) map[image.Platform]string {
	t.Helper()
	dir := t.TempDir()
	bins := map[image.Platform]string{}
	for _, p := range ps {
		path := filepath.Join(dir, "bin-"+p.Arch)
		if err := os.WriteFile(path, []byte("binary for "+p.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		bins[p] = path
	}
	return bins
}

func serverOptions() image.Options {
	o := image.Server()
	o.Version, o.Revision, o.Source = "v1.2.3", "0123abcd", "https://example.test/fluidity"
	o.Created = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	o.CABundle = []byte("-----BEGIN CERTIFICATE-----\nroots\n-----END CERTIFICATE-----\n")
	return o
}

func build(t *testing.T, bins map[image.Platform]string, o image.Options) v1.ImageIndex {
	t.Helper()
	idx, err := image.Build(context.Background(), bins, o)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestBuildServer(t *testing.T) {
	t.Parallel()
	o := serverOptions()
	idx := build(t, fakeBinaries(t, arm64, amd64), o)

	mt, err := idx.MediaType()
	if err != nil || mt != types.DockerManifestList {
		t.Errorf("index media type %s (%v), want %s", mt, err, types.DockerManifestList)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("index platforms %v, want %v (sorted)", got, want)
	}

	for _, m := range im.Manifests {
		t.Run(m.Platform.Architecture, func(t *testing.T) {
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != m.Platform.Architecture {
				t.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, m.Platform.Architecture)
			}
			if !cf.Created.Equal(o.Created) {
				t.Errorf("created %v, want %v", cf.Created, o.Created)
			}
			c := cf.Config
			if c.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", c.User)
			}
			if !reflect.DeepEqual(c.Entrypoint, []string{"/fluidity-server"}) {
				t.Errorf("entrypoint %q", c.Entrypoint)
			}
			if _, ok := c.ExposedPorts["8443/tcp"]; !ok || len(c.ExposedPorts) != 1 {
				t.Errorf("exposed ports %v, want 8443/tcp", c.ExposedPorts)
			}
			hc := c.Healthcheck
			if hc == nil || !reflect.DeepEqual(hc.Test, []string{"CMD", "/fluidity-server", "healthcheck"}) ||
				hc.Interval != 15*time.Second || hc.Timeout != 5*time.Second || hc.StartPeriod != 10*time.Second || hc.Retries != 3 {
				t.Errorf("healthcheck %+v", hc)
			}
			for k, v := range map[string]string{
				image.LabelVersion: "v1.2.3", image.LabelRevision: "0123abcd",
				image.LabelSource: "https://example.test/fluidity", image.LabelCreated: "2026-11-30T12:00:00Z",
				image.LabelTitle: "fluidity-server",
			} {
				if c.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
				}
			}
			if len(cf.History) != 2 || len(cf.RootFS.DiffIDs) != 2 {
				t.Errorf("%d history entries, %d layers, want 2 and 2", len(cf.History), len(cf.RootFS.DiffIDs))
			}

			files := extract(t, img)
			want := map[string]struct {
				mode int64
				body string
			}{
				"etc":                               {0o755, ""},
				"etc/ssl":                           {0o755, ""},
				"etc/ssl/certs":                     {0o755, ""},
				"etc/ssl/certs/ca-certificates.crt": {0o644, string(o.CABundle)},
				"fluidity-server":                   {0o755, "binary for linux/" + m.Platform.Architecture},
			}
			for name, w := range want {
				f, ok := files[name]
				switch {
				case !ok:
					t.Errorf("%s missing from the image", name)
				case f.hdr.Mode != w.mode || f.body != w.body:
					t.Errorf("%s: mode %o body %q, want %o %q", name, f.hdr.Mode, f.body, w.mode, w.body)
				}
			}
			if !strings.Contains(files["etc/passwd"].body, "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd %q has no nonroot user 65532", files["etc/passwd"].body)
			}
			for name, f := range files {
				if f.hdr.Uid != 0 || f.hdr.Gid != 0 || f.hdr.Uname != "" || f.hdr.Gname != "" || !f.hdr.ModTime.Equal(o.Created) {
					t.Errorf("%s: owner %d:%d %q:%q mtime %v, want root, no names, %v", name, f.hdr.Uid, f.hdr.Gid, f.hdr.Uname, f.hdr.Gname, f.hdr.ModTime, o.Created)
				}
			}
		})
	}

	// The base layer is the same for every architecture: a registry stores it once.
	layers := func(i int) []v1.Layer {
		img, err := idx.Image(im.Manifests[i].Digest)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	d0, _ := layers(0)[0].Digest()
	d1, _ := layers(1)[0].Digest()
	if d0 != d1 {
		t.Errorf("base layers differ between architectures: %s and %s", d0, d1)
	}
}

type entry struct {
	hdr  *tar.Header
	body string
}

func extract(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	return readTar(t, rc)
}

func readTar(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()
	files := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = entry{hdr: h, body: string(b)}
	}
}

func TestAgentHasNoHealthcheck(t *testing.T) {
	t.Parallel()
	o := image.Agent()
	idx := build(t, fakeBinaries(t, amd64), o)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Healthcheck != nil {
		t.Errorf("healthcheck %+v, want none", cf.Config.Healthcheck)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/fluidity-agent"}) || cf.Config.User != "65532:65532" {
		t.Errorf("entrypoint %q user %q", cf.Config.Entrypoint, cf.Config.User)
	}
	files := extract(t, img)
	if _, ok := files["etc/ssl/certs/ca-certificates.crt"]; ok {
		t.Error("CA bundle installed though Options.CABundle is nil")
	}
	if !cf.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("created %v, want the Unix epoch for a zero Created", cf.Created)
	}
}

// The same inputs give the same bytes: index digest and archive.
func TestReproducible(t *testing.T) {
	t.Parallel()
	bins := fakeBinaries(t, amd64, arm64)
	archive := func(o image.Options) (v1.Hash, []byte) {
		idx := build(t, bins, o)
		var buf bytes.Buffer
		if err := image.WriteArchive(&buf, idx, "fluidity-server:v1.2.3", o.Created); err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d, buf.Bytes()
	}
	d1, a1 := archive(serverOptions())
	d2, a2 := archive(serverOptions())
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Errorf("two builds differ: digests %s %s, archives equal %v", d1, d2, bytes.Equal(a1, a2))
	}
	later := serverOptions()
	later.Created = later.Created.Add(time.Hour)
	if d3, _ := archive(later); d3 == d1 {
		t.Error("a different creation time gave the same digest")
	}
}

// WriteArchive is the tar of what WriteLayout writes, and layout readers find
// the index under its name.
func TestArchiveMatchesLayout(t *testing.T) {
	t.Parallel()
	o := serverOptions()
	idx := build(t, fakeBinaries(t, amd64, arm64), o)
	dir := filepath.Join(t.TempDir(), "layout")
	if err := image.WriteLayout(dir, idx, "fluidity-server:v1.2.3"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := image.WriteArchive(&buf, idx, "fluidity-server:v1.2.3", o.Created); err != nil {
		t.Fatal(err)
	}
	inTar := readTar(t, &buf)

	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if len(tm.Manifests) != 1 || tm.Manifests[0].Digest != want ||
		tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "fluidity-server:v1.2.3" {
		t.Fatalf("layout index.json %+v, want one entry %s named fluidity-server:v1.2.3", tm.Manifests, want)
	}

	var onDisk []string
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		onDisk = append(onDisk, rel)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		e, ok := inTar[rel]
		switch {
		case !ok:
			t.Errorf("%s is in the layout, not in the archive", rel)
		case strings.HasPrefix(rel, "blobs/") && e.body != string(b):
			t.Errorf("%s differs between layout and archive", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range inTar {
		if e.hdr.Typeflag == tar.TypeReg && !slices.Contains(onDisk, name) {
			t.Errorf("%s is in the archive, not in the layout", name)
		}
	}
}

func TestBuildDoesNotChangeOptions(t *testing.T) {
	t.Parallel()
	o := serverOptions()
	o.Env = []string{"A=1"}
	before := o
	before.Env = []string{"A=1"}
	before.Healthcheck = append([]string(nil), o.Healthcheck...)
	build(t, fakeBinaries(t, amd64), o)
	if !reflect.DeepEqual(o, before) {
		t.Errorf("Build changed its options: %+v, was %+v", o, before)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	bins := fakeBinaries(t, amd64)
	tests := []struct {
		name string
		bins map[image.Platform]string
		edit func(*image.Options)
		want error
	}{
		{"no binary name", bins, func(o *image.Options) { o.Binary = "" }, image.ErrInvalid},
		{"binary name with a slash", bins, func(o *image.Options) { o.Binary = "bin/server" }, image.ErrInvalid},
		{"negative uid", bins, func(o *image.Options) { o.UID = -1 }, image.ErrInvalid},
		{"bad port", bins, func(o *image.Options) { o.Ports = []int{70000} }, image.ErrInvalid},
		{"bad env", bins, func(o *image.Options) { o.Env = []string{"NOEQUALS"} }, image.ErrInvalid},
		{"negative health interval", bins, func(o *image.Options) { o.HealthInterval = -time.Second }, image.ErrInvalid},
		{"before the epoch", bins, func(o *image.Options) { o.Created = time.Unix(-1, 0) }, image.ErrInvalid},
		{"no binaries", nil, func(*image.Options) {}, image.ErrInvalid},
		{"missing binary", map[image.Platform]string{amd64: filepath.Join(t.TempDir(), "none")}, func(*image.Options) {}, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := serverOptions()
			tc.edit(&o)
			_, err := image.Build(context.Background(), tc.bins, o)
			if !errors.Is(err, tc.want) {
				t.Errorf("Build: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDistBinaries(t *testing.T) {
	t.Parallel()
	got := image.DistBinaries("dist", "fluidity-server", image.Platforms()...)
	want := map[image.Platform]string{
		amd64: filepath.Join("dist", "fluidity-server-linux-amd64"),
		arm64: filepath.Join("dist", "fluidity-server-linux-arm64"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DistBinaries = %v, want %v", got, want)
	}
}
