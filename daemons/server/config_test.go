package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

func validServerConfig() Config {
	c := defaultConfig()
	c.CertFile, c.KeyFile, c.CACertFile = "s.crt", "s.key", "ca.crt"
	return c
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(*Config)
	}{
		{"listen_addr", func(c *Config) { c.ListenAddr = "example.com" }},
		{"listen_port", func(c *Config) { c.ListenPort = 65536 }},
		{"admin_listen", func(c *Config) { c.AdminListen = "127.0.0.1:8443" }}, // the tunnel port
		{"admin_listen", func(c *Config) { c.AdminListen = "metrics.internal:9100" }},
		{"cert_file", func(c *Config) { c.CertFile = "" }},
		{"cert_file", func(c *Config) { c.CertPEM = "-----BEGIN CERTIFICATE-----" }},
		{"cert_reload_interval", func(c *Config) { c.CertReload = -1 }},
		{"decoy_page", func(c *Config) { c.DecoyPage = "index.html" }}, // without decoy
		{"max_pending_handshakes", func(c *Config) { c.MaxHandshakes = 0 }},
		{"handshake_timeout", func(c *Config) { c.HandshakeTimeout = 0 }},
		{"max_pending_handshakes_per_source", func(c *Config) { c.MaxPerSource = 0 }},
		{"handshake_first_byte_timeout", func(c *Config) { c.FirstByte = 0 }},
		{"max_header_bytes", func(c *Config) { c.MaxHeaderBytes = 100 }},
		{"metrics_service", func(c *Config) { c.EmitMetrics, c.MetricsService = true, "" }},
		{"key_file", func(c *Config) { c.KeyFile = "" }},
		{"ca_cert_file", func(c *Config) { c.CACertFile = "" }},
		{"max_connections", func(c *Config) { c.MaxConnections = 0 }},
		{"dial_timeout", func(c *Config) { c.DialTimeout = 0 }},
		{"idle_timeout", func(c *Config) { c.IdleTimeout = -1 }},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = 0 }},
		{"gc_percent", func(c *Config) { c.GCPercent = 5 }},
		{"memory_limit", func(c *Config) { c.MemoryLimit = 1 << 20 }},
		{"gc_headroom", func(c *Config) { c.GCHeadroom = -1 }},
		{"metrics_interval", func(c *Config) { c.EmitMetrics, c.MetricsInterval = true, 0 }},
		{"allow_cidrs", func(c *Config) { c.AllowCIDRs = []string{"10.0.0.0/33"} }},
		{"deny_cidrs", func(c *Config) { c.DenyCIDRs = []string{"nope"} }},
		{"allow_hosts", func(c *Config) { c.AllowHosts = []string{"example.com:443"} }},
		{"cert_pem", func(c *Config) { c.CertFile, c.CertPEM = "", "pem" }},
		{"deny_hosts", func(c *Config) { c.DenyHosts = []string{"bad host"} }},
		{"log_level", func(c *Config) { c.LogLevel = "loud" }},
		{"log_format", func(c *Config) { c.LogFormat = "xml" }},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			c := validServerConfig()
			tc.mutate(&c)
			var fe *config.FieldError
			if err := c.Validate(); !errors.As(err, &fe) || fe.Key != tc.key {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.key)
			}
		})
	}
	c := validServerConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c.AdminListen = "127.0.0.1:9100"
	if err := c.Validate(); err != nil {
		t.Fatalf("admin listener on its own port refused: %v", err)
	}
	c.AdminListen = ""
	// The deny list works with PEM certificates too.
	pem := validServerConfig()
	pem.CertFile, pem.KeyFile, pem.CACertFile = "", "", ""
	pem.CertPEM, pem.KeyPEM, pem.CACertPEM = "pem", "pem", "pem"
	pem.DenyClients = []string{"lost-laptop", "a8:24:9f"}
	if err := pem.Validate(); err != nil {
		t.Fatalf("deny_clients with PEM certificates refused: %v", err)
	}
	// As the egress policy reads it, a bare address is a one-address range.
	c.AllowCIDRs, c.AllowHosts = []string{"10.1.2.3", "fd00::/8"}, []string{"*.corp.example"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid egress settings refused: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "version", args: []string{"version"}, wantOut: "fluidity-server "},
		{name: "help", args: []string{"--help"}, wantOut: "--max-connections"},
		{name: "bad env value", env: []string{"FLUIDITY_SERVER_MAX_CONNECTIONS=many"}, wantCode: 2, wantErr: "max_connections"},
		{name: "missing file", args: []string{"--config", "/nonexistent/server.yaml"}, wantCode: 2, wantErr: "server.yaml"},
		{name: "missing certificates", args: []string{"--cert-file", "/nonexistent", "--key-file", "/nonexistent", "--ca-cert-file", "/nonexistent", "--listen-port", "0"}, wantCode: 2, wantErr: "cert_file: open /nonexistent"},
		{name: "unloadable certificates", args: []string{"--cert-file", os.DevNull, "--key-file", os.DevNull, "--ca-cert-file", os.DevNull, "--listen-port", "0"}, wantCode: 1, wantErr: "tunnel:"},
		{name: "healthcheck fails on a closed port", args: []string{"healthcheck", "--listen-port", "1"}, wantCode: 1, wantErr: "healthcheck"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, tc.env, &out, &errb)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("code %d stdout %q stderr %q", code, out.String(), errb.String())
			}
		})
	}
}
