// Package platforms is a fixture: name has no definition for windows, and
// package missing imports a package that does not exist.
package platforms

import "runtime"

// Name names the platform, through the per-OS name.
func Name() string { return name() + "/" + runtime.GOARCH }
