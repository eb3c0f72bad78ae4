package main

import (
	"reflect"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/daemon"
)

// TestExampleConfig keeps agent.example.yaml (shipped in the release archives)
// generated from the configuration reference, and checks that it loads: as
// shipped, and with every key uncommented, to the defaults.
func TestExampleConfig(t *testing.T) {
	const title = "agent.yaml: the Fluidity agent's configuration (fluidity-agent --config agent.yaml)"
	set := map[string]string{
		"server_ip":    `"203.0.113.7"`,
		"cert_file":    `"agent.crt"`,
		"key_file":     `"agent.key"`,
		"ca_cert_file": `"ca.crt"`,
	}
	want := defaultConfig()
	want.ServerIP, want.CertFile, want.KeyFile, want.CACertFile = "203.0.113.7", "agent.crt", "agent.key", "ca.crt"
	defaults := defaultConfig()
	if err := daemon.SyncFile("agent.example.yaml", daemon.ExampleYAML(&defaults, title, set, false), *updateGolden); err != nil {
		t.Fatal(err)
	}
	for _, all := range []bool{false, true} {
		got := defaultConfig()
		if err := daemon.LoadExample(daemon.ExampleYAML(&defaults, title, set, all), &got); err != nil {
			t.Fatalf("every key written %v: %v", all, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("every key written %v: loads as\n%+v\nwant\n%+v", all, got, want)
		}
	}
}
