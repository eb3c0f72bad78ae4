package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

func validAgentConfig() Config {
	c := defaultConfig()
	c.ServerIP, c.CertFile, c.KeyFile, c.CACertFile = "203.0.113.7", "a.crt", "a.key", "ca.crt"
	return c
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		key    string
		mutate func(*Config)
	}{
		{"server_ip", func(c *Config) { c.ServerIP = "" }},
		{"server_port", func(c *Config) { c.ServerPort = 70000 }},
		{"server_name", func(c *Config) { c.ServerName = "" }},
		{"server_sni", func(c *Config) { c.ServerSNI = "192.0.2.1" }},
		{"server_sni", func(c *Config) { c.ServerSNI = "www.example.com." }},
		{"server_sni", func(c *Config) { c.ServerSNI = "not a name" }},
		{"server_sni", func(c *Config) { c.ServerSNI = "-bad.example" }},
		{"listen_addr", func(c *Config) { c.ListenAddr = "not-an-ip" }},
		{"local_proxy_port", func(c *Config) { c.LocalProxyPort = -1 }},
		{"admin_listen", func(c *Config) { c.AdminListen = "8081" }},
		{"admin_listen", func(c *Config) { c.AdminListen = "admin.example:8081" }},
		{"admin_listen", func(c *Config) { c.AdminListen = "127.0.0.1:8080" }}, // the proxy's
		{"socks_port", func(c *Config) { c.SOCKSPort = 70000 }},
		{"socks_port", func(c *Config) { c.SOCKSPort = -1 }},
		{"socks_port", func(c *Config) { c.SOCKSPort = c.LocalProxyPort }},
		{"socks_port", func(c *Config) { c.SOCKSPort = 8081 }}, // admin_listen's
		{"cert_file", func(c *Config) { c.CertFile = "" }},
		{"key_file", func(c *Config) { c.KeyFile = "" }},
		{"ca_cert_file", func(c *Config) { c.CACertFile = "" }},
		{"log_level", func(c *Config) { c.LogLevel = "loud" }},
		{"log_format", func(c *Config) { c.LogFormat = "xml" }},
		{"dial_timeout", func(c *Config) { c.DialTimeout = 0 }},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }},
		{"sessions", func(c *Config) { c.Sessions = 0 }},
		{"sessions", func(c *Config) { c.Sessions = 9 }},
		{"gc_percent", func(c *Config) { c.GCPercent = 5 }},
		{"memory_limit", func(c *Config) { c.MemoryLimit = 1 << 20 }},
		{"gc_headroom", func(c *Config) { c.GCHeadroom = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			c := validAgentConfig()
			tc.mutate(&c)
			var fe *config.FieldError
			if err := c.Validate(); !errors.As(err, &fe) || fe.Key != tc.key {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.key)
			}
		})
	}
	c := validAgentConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c.AdminListen = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("admin listener off refused: %v", err)
	}
	c.SOCKSPort = 1080
	if err := c.Validate(); err != nil {
		t.Fatalf("socks_port 1080 refused: %v", err)
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
		{name: "version", args: []string{"version"}, wantOut: "fluidity-agent "},
		{name: "help", args: []string{"--help"}, wantOut: "--local-proxy-port"},
		{name: "bad flag value", args: []string{"--server-port", "abc"}, wantCode: 2, wantErr: "server-port"},
		{name: "bad env value", env: []string{"FLUIDITY_AGENT_SERVER_PORT=abc"}, wantCode: 2, wantErr: "server_port"},
		{name: "missing required", args: []string{"--server-ip", "1.2.3.4"}, wantCode: 2, wantErr: "cert_file"},
		{name: "stray argument", args: []string{"serve"}, wantCode: 2, wantErr: "unexpected argument"},
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
