#!/usr/bin/env bash
# Prints a hash of what an analysis of the whole module depends on: the
# toolchain and its settings, every Go source of the module (tracked or not,
# but not ignored), go.mod and go.sum, and the arguments (the analysis' own
# inputs: a tool's version, a database's). scripts/vulncheck.sh and
# scripts/crosscheck.sh keep their results under it and reuse them while it
# stays the same, as Go's test cache does for a package's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
{
	go env GOVERSION GOOS GOARCH GOFLAGS CGO_ENABLED
	printf '%s\n' "$@"
	{ git ls-files -co --exclude-standard -- '*.go'; echo go.mod; echo go.sum; } | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-32
