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

.PHONY: all build build-host cross image-server run test deps fmt vet clean

all: build

build: build-host cross

build-host:
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/fluidity-agent ./daemons/agent
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/fluidity-server ./daemons/server
	$(BUILD_ENV) $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/fluidity ./daemons/fluidity

# The agent runs on users' machines: make sure every platform builds; and the
# server for the Fargate image's platform.
cross:
	@set -e; for p in $(AGENT_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "build agent $$os/$$arch"; \
		$(BUILD_ENV) GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' \
			-o dist/fluidity-agent-$$os-$$arch$$ext ./daemons/agent; \
	done
	@p=$(SERVER_IMAGE_PLATFORM); os=$${p%/*}; arch=$${p#*/}; \
		echo "build server $$os/$$arch"; \
		$(BUILD_ENV) GOOS=$$os GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' \
			-o dist/fluidity-server-$$os-$$arch ./daemons/server

# The server image for Fargate (push it to ECR: see the README's AWS walk-through).
image-server:
	$(CONTAINER) build --platform $(SERVER_IMAGE_PLATFORM) -f infra/Dockerfile.server \
		--build-arg VERSION=$(VERSION) -t fluidity-server:$(VERSION) .

run: build-host
	./scripts/run-local.sh

deps:
	./scripts/ci-deps.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

test:
	./scripts/test.sh

clean:
	rm -rf $(BIN) dist

.PHONY: bench soak fuzz-long
# Side-by-side benchmark (direct vs Fluidity vs ssh -D); writes BENCHMARKS.md. Not part of `make test`.
bench: build-host
	$(GO) run ./internal/bench/cmd/fluidity-bench -out BENCHMARKS.md

# Long-running soak and fault runs; not part of `make test`.
soak:
	$(GO) test -race -count=1 -timeout 20m -tags soak -run '^TestSoak$$' ./internal/faults/...

# Longer fuzzing than the brief pass in `make test`.
fuzz-long:
	./scripts/fuzz.sh 2m
