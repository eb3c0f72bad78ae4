// Package platform names a build target, GOOS/GOARCH, as the container image
// builder (internal/image) and the cross type-check (internal/crosscheck) take it.
package platform

import (
	"fmt"
	"strings"
)

// Platform is an operating system and an architecture, as GOOS and GOARCH
// (and OCI image indexes) name them.
type Platform struct {
	OS   string
	Arch string
}

// Parse reads "os/arch".
func Parse(s string) (Platform, error) {
	osName, arch, ok := strings.Cut(s, "/")
	if !ok || osName == "" || arch == "" || strings.Contains(arch, "/") {
		return Platform{}, fmt.Errorf("platform %q: want os/arch, e.g. linux/arm64", s)
	}
	return Platform{OS: osName, Arch: arch}, nil
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }
