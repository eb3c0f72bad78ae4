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

step "build (host and every agent platform)"
make --no-print-directory build

step "go test -race"
go test -race -count=1 -timeout 20m ./...

step "large-transfer memory bounds (no race detector, full 1 GiB)"
go test -count=1 -timeout 15m -run 'Big' ./tunnel/... ./internal/e2e/...

step "micro-benchmarks (one iteration each: they build and run)"
go test -count=1 -run '^$' -bench . -benchtime 1x ./...

step "fuzz (brief)"
./scripts/fuzz.sh "${FUZZTIME:-5s}"
