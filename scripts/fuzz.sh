#!/usr/bin/env bash
# Runs every fuzz target in the module for the given budget each (default
# 5000x: executions, as go test -fuzztime takes them).
#
# Budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzzing coordinator can report its own -fuzztime deadline as a failure
# ("context deadline exceeded", no failing input written) when the machine
# is loaded — golang/go#75804, fixed in Go 1.27. A count has no deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-5000x}
case $budget in
*x) ;;
*) echo "fuzz.sh: give the budget as an execution count, e.g. 30000x (durations hit golang/go#75804)" >&2; exit 2 ;;
esac
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $target ($budget)"
		go test -vet=off -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg"
	done
done
