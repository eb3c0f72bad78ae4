package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// file is one regular file of a layer; path is relative to the root.
type file struct {
	path string
	mode int64
	data []byte
}

type fileLayer struct {
	layer     v1.Layer
	createdBy string
}

// baseLayer holds what every image shares: /etc/passwd and /etc/group naming
// the non-root user (so tools show a name, not "I have no name!") and the CA
// bundle when there is one. Identical across architectures and images, so a
// registry stores it once.
func baseLayer(o Options) (fileLayer, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/:/sbin/nologin\n", o.UID, o.GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", o.GID)
	files := []file{
		{path: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "etc/group", mode: 0o644, data: []byte(group)},
	}
	createdBy := "COPY passwd group /etc/"
	if o.CABundle != nil {
		files = append(files, file{path: strings.TrimPrefix(CABundlePath, "/"), mode: 0o644, data: o.CABundle})
		createdBy += " and the CA bundle " + CABundlePath
	}
	l, err := newLayer(files, o.Created)
	if err != nil {
		return fileLayer{}, err
	}
	l.createdBy = createdBy
	return l, nil
}

// newLayer tars files (with their parent directories, in the order given),
// all owned by root and stamped with mtime, and gzips them. Nothing in the
// tar comes from the build machine but the bytes: no owner names, no times.
func newLayer(files []file, mtime time.Time) (fileLayer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.path); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX,
			}); err != nil {
				return fileLayer{}, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: f.path, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatPAX,
		}); err != nil {
			return fileLayer{}, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return fileLayer{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return fileLayer{}, err
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.DockerLayer), tarball.WithCompressedCaching)
	if err != nil {
		return fileLayer{}, err
	}
	return fileLayer{layer: l}, nil
}
