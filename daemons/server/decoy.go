package main

import (
	"fmt"
	"io"
	"os"

	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// maxDecoyPage is the library's bound on DecoyConfig.Page, checked here so that
// the error names the key and a huge file is not read whole.
const maxDecoyPage = 1 << 20

// decoyConfig is the decoy of decoy and decoy_page, the page read once at start.
func decoyConfig(cfg Config) (tunnel.DecoyConfig, error) {
	d := tunnel.DecoyConfig{Enabled: cfg.Decoy}
	if cfg.DecoyPage == "" {
		return d, nil
	}
	f, err := os.Open(cfg.DecoyPage)
	if err != nil {
		return d, &config.FieldError{Key: "decoy_page", Err: err}
	}
	defer f.Close()
	page, err := io.ReadAll(io.LimitReader(f, maxDecoyPage+1))
	switch {
	case err != nil:
		return d, &config.FieldError{Key: "decoy_page", Err: err}
	case len(page) > maxDecoyPage:
		return d, &config.FieldError{Key: "decoy_page", Err: fmt.Errorf("%s is over 1 MiB", cfg.DecoyPage)}
	case len(page) == 0:
		return d, &config.FieldError{Key: "decoy_page", Err: fmt.Errorf("%s is empty", cfg.DecoyPage)}
	}
	d.Page = page
	return d, nil
}
