package main

import (
	"flag"
	"reflect"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/daemon"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite server.example.yaml")

// TestExampleConfig keeps server.example.yaml (shipped in the release archives)
// generated from the configuration reference, and checks that it loads: as
// shipped, and with every key uncommented, to the defaults.
func TestExampleConfig(t *testing.T) {
	const title = "server.yaml: the Fluidity server's configuration (fluidity-server --config server.yaml)"
	set := map[string]string{
		"cert_file":    `"server.crt"`,
		"key_file":     `"server.key"`,
		"ca_cert_file": `"ca.crt"`,
	}
	want := defaultConfig()
	want.CertFile, want.KeyFile, want.CACertFile = "server.crt", "server.key", "ca.crt"
	defaults := defaultConfig()
	if err := daemon.SyncFile("server.example.yaml", daemon.ExampleYAML(&defaults, title, set, false), *updateGolden); err != nil {
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
