package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations naming the image in a layout's index.json: OCI's own (read by
// podman load and skopeo) and containerd's (read by docker load).
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// WriteLayout writes idx into dir as an OCI image layout whose index.json has
// one entry, the multi-arch index, named ref (such as
// "fluidity-server:v1.2.0"; empty for none). dir should not exist or be empty:
// blobs already there are kept. crane push, skopeo copy oci:DIR and
// layout.FromPath read it.
func WriteLayout(dir string, idx v1.ImageIndex, ref string) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(refAnnotations(ref))); err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	return nil
}

// WriteArchive writes idx to w as an OCI archive: the tar of an OCI image
// layout as WriteLayout makes it, for `podman load -i`, `docker load -i`
// (Docker 25 and later) and skopeo's oci-archive: transport. The tar is
// reproducible: entries sorted, stamped with mtime (zero means the Unix
// epoch), no owners.
func WriteArchive(w io.Writer, idx v1.ImageIndex, ref string, mtime time.Time) error {
	blobs := map[string]blob{}
	if err := collectIndex(idx, blobs); err != nil {
		return err
	}
	desc, err := partial.Descriptor(idx)
	if err != nil {
		return err
	}
	desc.Annotations = refAnnotations(ref)
	top, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     []v1.Descriptor{*desc},
	})
	if err != nil {
		return err
	}

	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	mtime = mtime.UTC().Truncate(time.Second)
	tw := tar.NewWriter(w)
	writeFile := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: %d bytes, its descriptor says %d", name, n, size)
		}
		return err
	}
	if err := writeFile("oci-layout", int64(len(layoutVersion)), strings.NewReader(layoutVersion)); err != nil {
		return err
	}
	if err := writeFile("index.json", int64(len(top)), bytes.NewReader(top)); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(blobs))
	for n := range blobs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := writeBlob(n, blobs[n], writeFile); err != nil {
			return fmt.Errorf("blob %s: %w", n, err)
		}
	}
	return tw.Close()
}

const layoutVersion = `{"imageLayoutVersion":"1.0.0"}`

func refAnnotations(ref string) map[string]string {
	if ref == "" {
		return nil
	}
	return map[string]string{annotationRefName: ref, annotationContainerdName: ref}
}

// blob is one content-addressed file of the layout.
type blob struct {
	size int64
	open func() (io.ReadCloser, error)
}

func bytesBlob(b []byte) blob {
	return blob{size: int64(len(b)), open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

func writeBlob(name string, b blob, writeFile func(string, int64, io.Reader) error) error {
	rc, err := b.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return writeFile(name, b.size, rc)
}

// collectIndex gathers the blobs of idx and everything it refers to, by tar name.
func collectIndex(idx v1.ImageIndex, blobs map[string]blob) error {
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	blobs[blobName(d)] = bytesBlob(raw)
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, m := range im.Manifests {
		switch {
		case m.MediaType.IsIndex():
			child, err := idx.ImageIndex(m.Digest)
			if err != nil {
				return err
			}
			if err := collectIndex(child, blobs); err != nil {
				return err
			}
		case m.MediaType.IsImage():
			img, err := idx.Image(m.Digest)
			if err != nil {
				return err
			}
			if err := collectImage(img, blobs); err != nil {
				return err
			}
		default:
			return fmt.Errorf("index entry %s: unsupported media type %s", m.Digest, m.MediaType)
		}
	}
	return nil
}

func collectImage(img v1.Image, blobs map[string]blob) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	blobs[blobName(d)] = bytesBlob(raw)
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return err
	}
	blobs[blobName(cd)] = bytesBlob(cfg)
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		blobs[blobName(ld)] = blob{size: size, open: l.Compressed}
	}
	return nil
}

// blobName is a blob's name in the layout: blobs/<algorithm>/<hex>.
func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
