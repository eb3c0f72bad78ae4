#!/usr/bin/env bash
# The whole test suite: `make test` runs this, and so does .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"

# Each step's wall time and the CPU time of what it ran (children's user+sys, as
# bash's `times` counts them once waited for), summed up at the end: where a
# slow suite spends its time.
# `times` must run in this shell (in $(...) it would count the subshell's children).
times_file=$(mktemp)
cpu_now() { # sets cpu
	times >"$times_file"
	cpu=$(awk 'NR==2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.1f", u[1]*60+u[2]+s[1]*60+s[2] }' "$times_file")
}
step_name= step_wall=0 step_cpu=0 summary=
step_end() {
	[ -n "$step_name" ] || return 0
	cpu_now
	summary+=$(printf '%6ds %7.0fs  %s' $((SECONDS - step_wall)) "$(awk -v a="$cpu" -v b="$step_cpu" 'BEGIN{print a-b}')" "$step_name")$'\n'
	step_name=
}
step() {
	step_end
	step_name=$*
	cpu_now
	step_wall=$SECONDS step_cpu=$cpu
	printf '\n=== %s\n' "$*"
}

# Several tests need root (network namespaces for the office, rootful podman,
# a systemd user manager in a private mount namespace); they fail, never skip,
# without it, so say so once, up front.
if [ "$(id -u)" -ne 0 ]; then
	echo "make test needs root (network namespaces, podman, systemd; ci-deps installs with apt-get): run it as root or with sudo -E env \"PATH=\$PATH\" make test" >&2
	exit 1
fi

step "dependencies"
./scripts/ci-deps.sh

step "gofmt"
# gofmt's own failure (a file it cannot parse) fails the step too.
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi

# vet, golangci-lint, the host build, the binaries the tests build
# (internal/testbin) and the non-race test pass share one build configuration,
# CGO_ENABLED=0 and -trimpath as the Makefile builds, so that an empty build cache
# compiles every dependency once for all of them instead of once per configuration
# (the race tests need cgo and their own instrumented build whatever is done).
# -trimpath goes in GOFLAGS, for every go command below and the ones the tests and
# golangci-lint run: without it the build cache keys this module's packages by
# their directory, and each fresh clone (CI's) compiled all of them again, twice
# (golangci-lint's loading, about 35 s of CPU, and the race build, about 40 s).
export CGO_ENABLED=0 GOFLAGS="-trimpath${GOFLAGS:+ $GOFLAGS}"
step "go vet"
go vet ./...

# Everything that shares nothing with the race-instrumented test builds runs beside
# them, one after the other: the race tests spend much of their time waiting on
# processes and sockets (moto, podman, systemd, the daemons), which leaves a core
# free. Their output follows the tests'; a failure among them fails the run.
# golangci-lint and the host build are there too: on warm caches they are 10 s
# during which the tests' core would otherwise wait (and vet, above, has already
# failed fast on anything that does not compile).
step "in the background: golangci-lint, the host build, the cross type-check, govulncheck, 1 GiB bounds and micro-benchmarks"
bg_log=$(mktemp)
# Only the packages that have TestBig* or benchmarks: any other would be linked
# again, without the race detector, to run nothing.
big_bench_pkgs=$(grep -rlE --include='*_test.go' '^func (Benchmark|TestBig)' . | xargs -n1 dirname | sort -u)
(
	set -e
	sub() { # name, command...
		local t=$SECONDS name=$1
		shift
		echo "=== $name"
		"$@"
		echo "($name: $((SECONDS - t))s)"
		echo
	}
	sub "golangci-lint (.golangci.yml)" golangci-lint run --allow-serial-runners ./...
	sub "build (host)" make --no-print-directory build-host
	sub "cross type-check (the shipped binaries for darwin/arm64, windows/amd64, linux/arm64; make cross-check)" ./scripts/crosscheck.sh
	sub "govulncheck (offline: a local copy of the Go vulnerability database)" ./scripts/vulncheck.sh
	# One non-race pass for both: the 1 GiB memory bounds need shipped-speed code,
	# and one iteration of every micro-benchmark shows they build and run.
	sub "large-transfer memory bounds (full 1 GiB) and micro-benchmarks (one iteration each), no race detector" \
		go test -count=1 -vet=off -timeout 15m -run '^TestBig' -bench . -benchtime 1x $big_bench_pkgs
	# No fuzzing here: every fuzz target's seed corpus runs as a test in go test
	# below. The search itself is `make fuzz` (5,000 executions a target, about 25 s
	# of CPU even on warm caches, 115 s of wall time beside the race tests on an
	# empty one: each target's package and its dependencies are compiled again,
	# instrumented), which the
	# GitHub workflow runs, and `make fuzz-long`.
) >"$bg_log" 2>&1 &
bg_pid=$!
# (Nothing in an EXIT trap may fail: under set -e its status would become the run's.)
trap 'wait "$bg_pid" 2>/dev/null || true; rm -f "$bg_log" "$times_file" || true' EXIT

# go vet ran above: -vet=off spares each test build go test's own vet pass. Three
# test binaries at once on two cores, for the same reason as the background work.
step "go test -race"
# The packages whose tests take longest (each 10-50 s, mostly waiting on moto,
# podman, systemd or a daemon) come first, so that they run beside the rest
# instead of after it: go test starts packages in the order given. A renamed one
# fails here loudly, and is listed again.
slow_first="./internal/deploy ./internal/e2e ./daemons/agent ./internal/faults ./tunnel ./lambdas
	./infra ./lifecycle/fargate ./internal/image ./daemons/server ./daemons/fluidity"
CGO_ENABLED=1 go test -race -count=1 -vet=off -p 3 -timeout 20m $slow_first ./...

step "the background work (its output)"
bg_rc=0
wait "$bg_pid" || bg_rc=$?
cat "$bg_log"
if [ "$bg_rc" -ne 0 ]; then echo "FAILED: the background work above (golangci-lint, the host build, the cross type-check, govulncheck, 1 GiB bounds or benchmarks)"; exit 1; fi

step_end
cpu_now
# bash counts a child's CPU when it is reaped: the background work's lands in the
# step that was running when it ended (go test -race if it ended first).
printf '\n=== time per step (wall, CPU of its processes; the background work'"'"'s CPU counts in the step during which it ended)\n%s%6ds %7.0fs  total\n' "$summary" "$SECONDS" "$cpu"
