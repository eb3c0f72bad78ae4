package main

import (
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/daemon"
)

// TestExampleConfig keeps agent.example.yaml (shipped in the release archives)
// generated from the configuration reference, and checks that it loads: as
// shipped, and with every key uncommented, to the defaults.
func TestExampleConfig(t *testing.T) {
	want := defaultConfig()
	want.ServerIP, want.CertFile, want.KeyFile, want.CACertFile = "203.0.113.7", "agent.crt", "agent.key", "ca.crt"
	err := daemon.CheckExample("agent.example.yaml",
		"agent.yaml: the Fluidity agent's configuration (fluidity-agent --config agent.yaml)",
		map[string]string{"server_ip": `"203.0.113.7"`, "cert_file": `"agent.crt"`, "key_file": `"agent.key"`, "ca_cert_file": `"ca.crt"`},
		func() any { c := defaultConfig(); return &c }, &want, *updateGolden)
	if err != nil {
		t.Fatal(err)
	}
}
