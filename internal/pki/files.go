package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrExists reports that WriteFiles refused to replace an existing file.
// It is always wrapped with the offending path; test for it with errors.Is.
var ErrExists = errors.New("file already exists")

const (
	keyFileMode  fs.FileMode = 0o600
	certFileMode fs.FileMode = 0o644
)

// WriteFiles stores the certificate (mode 0644) and private key (mode 0600)
// as PEM. Each file is written to a temporary file in the same directory and
// moved into place, so a crash never leaves a half-written key behind. Unless
// force is set, an existing file at either path is left untouched and an
// error wrapping ErrExists is returned. The directory must already exist.
func (kp *KeyPair) WriteFiles(certPath, keyPath string, force bool) error {
	if kp == nil || kp.Cert == nil || kp.Key == nil {
		return errors.New("pki: key pair needs both a certificate and a key")
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		return err
	}
	if !force {
		// Check both up front so a refusal writes nothing at all.
		for _, p := range []string{keyPath, certPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("pki: %s: %w", p, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pki: %w", err)
			}
		}
	}
	if err := writeFileAtomic(keyPath, keyPEM, keyFileMode, force); err != nil {
		return err
	}
	if err := writeFileAtomic(certPath, kp.CertPEM(), certFileMode, force); err != nil {
		if !force {
			// The key is ours (it did not exist a moment ago); don't leave
			// it orphaned without its certificate.
			_ = os.Remove(keyPath)
		}
		return err
	}
	return nil
}

// writeFileAtomic writes data to a temporary file and moves it to path. The
// temporary file is created 0600 by os.CreateTemp, so key material is never
// readable by others even briefly; perm is applied before any data is
// written. Without force, the final step is a hard link, which fails rather
// than replacing a file that appeared in the meantime.
func writeFileAtomic(path string, data []byte, perm fs.FileMode, force bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: create temporary file for %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			_ = tmp.Close()
		}
		// After a successful rename this fails harmlessly; after a link it
		// drops the temporary name; after a failure it cleans up.
		_ = os.Remove(tmpName)
	}()
	if perm != 0o600 {
		if err := tmp.Chmod(perm); err != nil {
			return fmt.Errorf("pki: chmod %s: %w", tmpName, err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	closeErr := tmp.Close()
	tmp = nil
	if closeErr != nil {
		return fmt.Errorf("pki: close %s: %w", path, closeErr)
	}
	if force {
		if err := os.Rename(tmpName, path); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		return nil
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pki: %s: %w", path, ErrExists)
		}
		// Some file systems have no hard links; fall back to check-then-rename.
		if _, statErr := os.Lstat(path); statErr == nil {
			return fmt.Errorf("pki: %s: %w", path, ErrExists)
		}
		if err := os.Rename(tmpName, path); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}
