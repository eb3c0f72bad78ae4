// Package buildinfo carries the version stamped in at link time.
package buildinfo

import "runtime/debug"

// Version is set with -ldflags "-X .../buildinfo.Version=...".
var Version = ""

// String returns the stamped version, falling back to the module version
// recorded by the Go toolchain (useful after `go install`).
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}
