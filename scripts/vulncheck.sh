#!/usr/bin/env bash
# govulncheck (pinned in scripts/ci-deps.sh) against a local copy of the Go
# vulnerability database, so `make test` never asks vuln.go.dev. The copy comes from
# the golang.org/x/vulndb module (through the Go module proxy like any module): it
# ships the OSV entries (data/osv/*.json) but not the v1 index govulncheck reads, so
# `fluidity-vulndb index` (internal/vulndb) writes that, once per vulndb version, into a cache
# outside the repository. Bump VULNDB_VERSION for newer advisories.
#
# When no database can be had (no module proxy, no cache) the step is skipped with a
# loud banner; FLUIDITY_VULNCHECK=required turns that into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
cache=${FLUIDITY_VULNDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fluidity/vulndb}
db=$cache/$VULNDB_VERSION

no_db() {
	{
		echo
		echo '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
		echo "!!! govulncheck NOT RUN: no vulnerability database ($*)"
		echo "!!! expected golang.org/x/vulndb@$VULNDB_VERSION from the Go module proxy"
		echo "!!! or a database already built in $db"
		echo '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
		echo
	} >&2
	if [ "${FLUIDITY_VULNCHECK:-}" = required ]; then exit 1; fi
	exit 0
}

if [ ! -f "$db/index/modules.json" ]; then
	if ! out=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" 2>&1); then
		no_db "go mod download failed: $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)"
	fi
	src=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[ -d "$src/data/osv" ] || no_db "the module has no data/osv in '$src'"
	# Entries carry no modified time in the module; the pseudo-version's commit time stands in.
	ts=$(printf '%s' "$VULNDB_VERSION" | sed -E 's/.*-([0-9]{14})-[0-9a-f]{12}$/\1/')
	modified="${ts:0:4}-${ts:4:2}-${ts:6:2}T${ts:8:2}:${ts:10:2}:${ts:12:2}Z"
	mkdir -p "$cache"
	go run ./internal/vulndb/cmd/fluidity-vulndb index -osv "$src/data/osv" -out "$db" -modified "$modified"
fi

# Source mode, symbol level: a vulnerable function counts when this module's code can
# reach it; the toolchain's standard library is checked against the same database.
# govulncheck's JSON mode always exits 0, so the gate decides, against the accepted list.
#
# The analysis loads and builds SSA for every package, the AWS SDK's among them: about
# a minute of CPU. Its result depends only on the sources, the toolchain, govulncheck
# and the database, so it is kept under a hash of all of them (like Go's test cache)
# and reused when none has changed; the gate below always runs.
echo "govulncheck $(go env GOVERSION), database $db"
key=$(./scripts/source-key.sh "$(go version -m "$(command -v govulncheck)" | awk '$1 == "mod" {print $2, $3}')" "$VULNDB_VERSION")
results=$cache/results
result=$results/$key.json
if [ -s "$result" ]; then
	echo "govulncheck: sources, toolchain and database as in an earlier run: its analysis reused ($result)"
else
	mkdir -p "$results"
	tmp=$(mktemp "$results/.run.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	govulncheck -db "file://$db" -format json ./... >"$tmp"
	mv "$tmp" "$result"
	# Keep the newest few: each is a few hundred kilobytes.
	ls -1t "$results"/*.json | tail -n +6 | xargs -r rm -f
fi
go run ./internal/vulndb/cmd/fluidity-vulndb gate -accepted scripts/vulncheck-accepted.txt <"$result"
