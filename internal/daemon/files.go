package daemon

import (
	"os"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// File is a file a daemon's configuration names and the daemon reads at start.
type File struct {
	Key  string // the setting naming it, e.g. "cert_file"
	Path string // empty when the setting is not used
}

// fileLister is implemented by a daemon's Config to have Load check, after
// Validate, that every file it names can be opened: a missing certificate is a
// configuration error naming its key (exit status 2), not a failure at start.
type fileLister interface {
	Files() []File
}

// CheckFiles reports the first file that cannot be opened for reading.
func CheckFiles(files []File) error {
	for _, f := range files {
		if f.Path == "" {
			continue
		}
		fh, err := os.Open(f.Path)
		if err != nil {
			return &config.FieldError{Key: f.Key, Err: err}
		}
		_ = fh.Close()
	}
	return nil
}
