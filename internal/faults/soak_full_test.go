//go:build soak

package faults

import "testing"

// TestSoak is the full soak: 10,000 operations. Run it with
//
//	go test -race -count=1 -tags soak -run '^TestSoak$' -timeout 20m ./internal/faults/...
func TestSoak(t *testing.T) {
	runSoak(t, 10000, 32)
}
