package main

import (
	"flag"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/daemon"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite server.example.yaml")

// TestExampleConfig keeps server.example.yaml (shipped in the release archives)
// generated from the configuration reference, and checks that it loads: as
// shipped, and with every key uncommented, to the defaults.
func TestExampleConfig(t *testing.T) {
	want := defaultConfig()
	want.CertFile, want.KeyFile, want.CACertFile = "server.crt", "server.key", "ca.crt"
	err := daemon.CheckExample("server.example.yaml",
		"server.yaml: the Fluidity server's configuration (fluidity-server --config server.yaml)",
		map[string]string{"cert_file": `"server.crt"`, "key_file": `"server.key"`, "ca_cert_file": `"ca.crt"`},
		func() any { c := defaultConfig(); return &c }, &want, *updateGolden)
	if err != nil {
		t.Fatal(err)
	}
}
