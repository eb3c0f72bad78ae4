#!/usr/bin/env bash
# The whole test suite: `make test` runs this, and so does .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"

step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
./scripts/ci-deps.sh

step "gofmt"
# gofmt's own failure (a file it cannot parse) fails the step too.
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi

step "go vet"
go vet ./...

step "golangci-lint (.golangci.yml)"
golangci-lint run --allow-serial-runners ./...

step "govulncheck (offline: a local copy of the Go vulnerability database)"
./scripts/vulncheck.sh

step "build (host)"
make --no-print-directory build-host

# The cross-builds (every agent platform, the server image's) share nothing with
# the race-instrumented test builds: they run beside the tests, which spend much
# of their time waiting on processes and sockets. Their log follows the tests.
step "cross-builds, in the background"
cross_log=$(mktemp)
make --no-print-directory cross >"$cross_log" 2>&1 &
cross_pid=$!
trap 'wait "$cross_pid" 2>/dev/null || true; rm -f "$cross_log"' EXIT

step "go test -race"
go test -race -count=1 -timeout 20m ./...

step "cross-builds (every agent platform, the server image's)"
cross_rc=0
wait "$cross_pid" || cross_rc=$?
cat "$cross_log"
if [ "$cross_rc" -ne 0 ]; then echo "cross-builds failed"; exit 1; fi

# One non-race pass for both: the 1 GiB memory bounds need shipped-speed code, and
# one iteration of every micro-benchmark shows they build and run.
step "large-transfer memory bounds (full 1 GiB) and micro-benchmarks (one iteration each), no race detector"
go test -count=1 -timeout 15m -run '^TestBig' -bench . -benchtime 1x ./...

step "fuzz (brief)"
./scripts/fuzz.sh "${FUZZTIME:-5s}"
