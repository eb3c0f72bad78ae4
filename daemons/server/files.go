package main

import "github.com/fluidity-tunnel/fluidity/internal/daemon"

// Files lists what the server reads at start, for daemon.Command.Load to
// check; empty when the material comes as PEM text instead.
func (c *Config) Files() []daemon.File {
	return []daemon.File{
		{Key: "cert_file", Path: c.CertFile},
		{Key: "key_file", Path: c.KeyFile},
		{Key: "ca_cert_file", Path: c.CACertFile},
	}
}
