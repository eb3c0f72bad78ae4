#!/usr/bin/env bash
# The binaries this repository ships, type-checked for the platforms the host
# does not build (internal/crosscheck): the agent for macOS and Windows, and
# everything for linux/arm64 (the server image's and the Lambdas' platform).
# A type-check from source, not a build: on an empty build cache each platform
# built would compile the standard library and every dependency again (about
# 300 s of CPU for three), where this takes a few seconds of CPU a platform.
# `make cross` (and `make build`, `make release`, the GitHub workflow's cross
# job) builds all six.
#
# The result depends only on the sources and the toolchain, so a pass is
# remembered under their hash (scripts/source-key.sh) and not repeated while
# neither changes.
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=${CROSSCHECK_PLATFORMS:-darwin/arm64 windows/amd64 linux/arm64}
packages=(./daemons/... ./lambdas/...)

cache=${XDG_CACHE_HOME:-$HOME/.cache}/fluidity/crosscheck
key=$(./scripts/source-key.sh "$platforms" "${packages[@]}")
if [ -e "$cache/$key" ]; then
	echo "crosscheck: sources and toolchain as in an earlier passing run for $platforms: not repeated ($cache/$key)"
	exit 0
fi
go run ./internal/crosscheck/cmd/fluidity-crosscheck -platforms "$platforms" "${packages[@]}"
mkdir -p "$cache"
touch "$cache/$key"
# Keep the newest few markers.
ls -1t "$cache" | tail -n +21 | (cd "$cache" && xargs -r rm -f)
