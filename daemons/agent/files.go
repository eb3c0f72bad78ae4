package main

import "github.com/fluidity-tunnel/fluidity/internal/daemon"

// Files lists what the agent reads at start, for daemon.Command.Load to check.
func (c *Config) Files() []daemon.File {
	return []daemon.File{
		{Key: "cert_file", Path: c.CertFile},
		{Key: "key_file", Path: c.KeyFile},
		{Key: "ca_cert_file", Path: c.CACertFile},
		{Key: "upstream_proxy_credentials_file", Path: c.UpstreamCreds},
	}
}
