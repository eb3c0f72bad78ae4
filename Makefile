# Fluidity task runner. `make run` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Shared with infra/Dockerfile.*: static, reproducible, stripped binaries.
GOFLAGS_BUILD := -trimpath
LDFLAGS := -s -w -X github.com/fluidity-tunnel/fluidity/internal/buildinfo.Version=$(VERSION)
# Static binaries for the builds (the race detector in `make test` needs cgo).
BUILD_ENV := CGO_ENABLED=0

AGENT_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
# The server image's platform: infra/fargate.yaml runs ARM64 (Graviton) Fargate by
# default; a test keeps this, the template default and the README in step.
# For CpuArchitecture=X86_64 use `make image-server SERVER_IMAGE_PLATFORM=linux/amd64`.
SERVER_IMAGE_PLATFORM := linux/arm64
# Builds infra/Dockerfile.* without a Docker engine.
CONTAINER ?= podman

.PHONY: all build build-host build-daemons cross cross-check cross-agents images image-server run test deps fmt vet clean

all: build

build: build-host cross

build-host: build-daemons
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/fluidity ./daemons/fluidity

build-daemons:
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/fluidity-agent ./daemons/agent
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/fluidity-server ./daemons/server

# The agent runs on users' machines: make sure every platform builds; and the
# server for the Fargate image's platform.
cross:
	@$(MAKE) --no-print-directory cross-agents PLATFORMS='$(AGENT_PLATFORMS)'

# What `make test` runs instead: the shipped binaries type-checked for
# darwin/arm64, windows/amd64 and linux/arm64 from source, without a build
# (scripts/crosscheck.sh, internal/crosscheck): a few seconds of CPU a platform,
# where each platform built on an empty cache compiles the standard library and
# every dependency again. `make build`, `make release` and the GitHub workflow's
# cross job build all six.
cross-check:
	./scripts/crosscheck.sh

cross-agents:
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "build agent $$os/$$arch"; \
		$(BUILD_ENV) GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' \
			-o dist/fluidity-agent-$$os-$$arch$$ext ./daemons/agent; \
	done
	@p=$(SERVER_IMAGE_PLATFORM); os=$${p%/*}; arch=$${p#*/}; \
		echo "build server $$os/$$arch"; \
		$(BUILD_ENV) GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' \
			-o dist/fluidity-server-$$os-$$arch ./daemons/server

# The server and agent images (OCI, multi-arch), built by internal/image without a
# container engine or a base image, from the same binaries as `make build`, into
# dist/images/: NAME.oci.tar (podman/docker load) and NAME/ (OCI layout, to push).
IMAGE_PLATFORMS := linux/amd64 linux/arm64
# Image timestamps: the commit's time, so that a rebuild gives the same digests.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
images: dist/ca-certificates.crt
	@set -e; for p in $(IMAGE_PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; for d in agent server; do \
		echo "build $$d $$os/$$arch"; \
		$(BUILD_ENV) GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' \
			-o dist/fluidity-$$d-$$os-$$arch ./daemons/$$d; \
	done; done
	$(GO) run ./internal/image/cmd/fluidity-image -dist dist -out dist/images -platforms '$(IMAGE_PLATFORMS)' \
		-version '$(VERSION)' -revision '$(REVISION)' -created '$(SOURCE_DATE_EPOCH)' -ca-bundle dist/ca-certificates.crt

# The build machine's CA bundle, for the images (and the Dockerfiles' build context).
dist/ca-certificates.crt: /etc/ssl/certs/ca-certificates.crt
	@mkdir -p dist && cp $< $@

# The alternative with a container engine: infra/Dockerfile.server around the
# binary `make cross` builds for SERVER_IMAGE_PLATFORM (no base image pulled).
# podman keeps the HEALTHCHECK only in Docker format.
image-server: cross dist/ca-certificates.crt
	$(CONTAINER) build $(if $(filter podman,$(notdir $(CONTAINER))),--format docker) \
		--platform $(SERVER_IMAGE_PLATFORM) -f infra/Dockerfile.server \
		--build-arg VERSION=$(VERSION) -t fluidity-server:$(VERSION) .

# make run needs the daemons and `fluidity certs`: it builds the CLI without deploy
# and destroy (-tags fluidity_nodeploy), which link the AWS SDK's CloudFormation, EC2,
# S3... clients and would make a first `make run` compile for minutes. `make build`
# builds the full bin/fluidity.
run: build-daemons
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -tags fluidity_nodeploy -o $(BIN)/run/fluidity ./daemons/fluidity
	FLUIDITY_CLI=$(BIN)/run/fluidity ./scripts/run-local.sh

deps:
	./scripts/ci-deps.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(BUILD_ENV) $(GO) vet $(GOFLAGS_BUILD) ./...

.PHONY: lint vulncheck
# The linters `make test` runs (.golangci.yml; scripts/ci-deps.sh installs the pinned version).
lint:
	./scripts/ci-deps.sh
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" golangci-lint run --allow-serial-runners ./...

# govulncheck against a local copy of the vulnerability database (scripts/vulncheck.sh).
vulncheck:
	./scripts/ci-deps.sh
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" ./scripts/vulncheck.sh

test:
	./scripts/test.sh

clean:
	rm -rf $(BIN) dist

.PHONY: release
# Release archives for every agent platform (agent, server, CLI, README, LICENSE,
# example configurations) and their SHA256SUMS, in dist/release: see the README's Releases.
release:
	VERSION=$(VERSION) LDFLAGS='$(LDFLAGS)' PLATFORMS='$(AGENT_PLATFORMS)' ./scripts/release.sh

.PHONY: bench soak fuzz fuzz-long
# Side-by-side benchmark (direct vs Fluidity vs ssh -D); writes BENCHMARKS.md. Not part of `make test`.
bench: build-host
	$(GO) run ./internal/bench/cmd/fluidity-bench -out BENCHMARKS.md

# Long-running soak and fault runs; not part of `make test`.
soak:
	$(GO) test -race -count=1 -timeout 20m -tags soak -run '^TestSoak$$' ./internal/faults/...

# A brief pass of every fuzz target (5,000 executions each; the GitHub workflow
# runs it). `make test` runs every target's seed corpus (testdata/fuzz) as tests.
fuzz:
	./scripts/fuzz.sh 5000x

# The real search.
fuzz-long:
	./scripts/fuzz.sh 2000000x
