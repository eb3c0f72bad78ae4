package main

import (
	"os"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// TestREADMEDocumentsEveryKey keeps the README's configuration reference honest.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	for _, e := range config.Reference(&cfg) {
		row := "| `" + e.Key + "` | `" + e.Default + "` |"
		if e.Default == "" {
			row = "| `" + e.Key + "` | |"
		}
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md lacks the row for %s (want a line containing %q)", e.Key, row)
		}
	}
}
