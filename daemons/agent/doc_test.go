package main

import (
	"flag"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/daemon"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table")

// TestREADMEConfigTable keeps the README's configuration reference generated from
// the config struct: every key, its default, environment variable, flag and help.
func TestREADMEConfigTable(t *testing.T) {
	cfg := defaultConfig()
	table := daemon.ReferenceTable(&cfg, command.EnvPrefix)
	if err := daemon.SyncREADME("../../README.md", "agent-config", table, *update); err != nil {
		t.Fatal(err)
	}
}
