#!/usr/bin/env bash
# Release archives: `make release` runs this. For each platform, one archive
# (tar.gz; zip for Windows) holding fluidity-agent, fluidity-server, the
# fluidity CLI, README.md, LICENSE and example configurations, and SHA256SUMS
# over all of them, in $DIST (dist/release).
#
# Reproducible: the same commit gives byte-identical archives. Every entry's
# time is the commit's (SOURCE_DATE_EPOCH), entries are sorted, owners are
# 0/0 without names, modes are fixed, gzip stores no name or time; the
# binaries are built with -trimpath and without build IDs that vary.
#
# NOBUILD=1 packages binaries already in $DIST/build/<os>-<arch>/ instead of
# building them (the test packages fake ones that way).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DIST=${DIST:-dist/release}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
LDFLAGS=${LDFLAGS:-"-s -w -X github.com/fluidity-tunnel/fluidity/internal/buildinfo.Version=$VERSION"}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH TZ=UTC LC_ALL=C

# What each archive ships besides the binaries: source path -> name inside.
EXTRAS=(
	"README.md:README.md"
	"LICENSE:LICENSE"
	"daemons/agent/agent.example.yaml:examples/agent.yaml"
	"daemons/server/server.example.yaml:examples/server.yaml"
)
BINARIES=(fluidity-agent:./daemons/agent fluidity-server:./daemons/server fluidity:./daemons/fluidity)

for tool in tar gzip zip sha256sum; do
	command -v "$tool" >/dev/null || { echo "release: $tool is needed (scripts/ci-deps.sh installs it)" >&2; exit 1; }
done

mkdir -p "$DIST"
rm -f "$DIST"/*.tar.gz "$DIST"/*.zip "$DIST"/SHA256SUMS
archives=()
for p in $PLATFORMS; do
	os=${p%/*} arch=${p#*/} ext=
	[ "$os" = windows ] && ext=.exe
	bindir=$DIST/build/$os-$arch
	if [ "${NOBUILD:-0}" != 1 ]; then
		for b in "${BINARIES[@]}"; do
			name=${b%%:*} pkg=${b#*:}
			echo "release: build $name $os/$arch"
			CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "$LDFLAGS" -o "$bindir/$name$ext" "$pkg"
		done
	fi

	base=fluidity_${VERSION}_${os}_${arch}
	stage=$DIST/stage/$base
	rm -rf "$DIST/stage"
	mkdir -p "$stage/examples"
	for b in "${BINARIES[@]}"; do
		name=${b%%:*}
		install -m 0755 "$bindir/$name$ext" "$stage/$name$ext"
	done
	for e in "${EXTRAS[@]}"; do
		install -m 0644 "${e%%:*}" "$stage/${e#*:}"
	done
	chmod 0755 "$stage" "$stage/examples"
	find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

	if [ "$os" = windows ]; then
		out=$base.zip
		# -X: no extra fields (uid/gid, extended times); names fed sorted.
		(cd "$DIST/stage" && find "$base" | sort | zip -q -X -D "../$out" -@)
	else
		out=$base.tar.gz
		tar -C "$DIST/stage" --sort=name --format=gnu --owner=0 --group=0 --numeric-owner \
			--mtime="@$SOURCE_DATE_EPOCH" -cf - "$base" | gzip -n -9 >"$DIST/$out"
	fi
	archives+=("$out")
	echo "release: $DIST/$out"
done
rm -rf "$DIST/stage"
(cd "$DIST" && sha256sum "${archives[@]}" >SHA256SUMS)
echo "release: $DIST/SHA256SUMS"
