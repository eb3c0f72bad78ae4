package infra_test

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, USER, …
	args string
}

func parseDockerfile(t *testing.T, name string) []instruction {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// makeVar returns the value of "NAME := value" in the Makefile.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*:?=\s*(.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("Makefile has no %s", name)
	}
	return strings.TrimSpace(string(m[1]))
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	// The images must stamp binaries exactly as `make build` does, with the
	// Makefile's $(VERSION) becoming the build argument ${VERSION}.
	ldflags := strings.ReplaceAll(makeVar(t, "LDFLAGS"), "$(VERSION)", "${VERSION}")
	buildFlags := makeVar(t, "GOFLAGS_BUILD")

	tests := []struct {
		file, pkg, binary, port string
	}{
		{"Dockerfile.server", "./daemons/server", "fluidity-server", "8443"},
		{"Dockerfile.agent", "./daemons/agent", "fluidity-agent", "8080"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			ins := parseDockerfile(t, tc.file)
			var stages []int
			for i, in := range ins {
				if in.cmd == "FROM" {
					stages = append(stages, i)
				}
			}
			if len(stages) < 2 {
				t.Fatalf("%d FROM stages, want a multi-stage build", len(stages))
			}
			builder, final := ins[stages[0]:stages[len(stages)-1]], ins[stages[len(stages)-1]:]
			base := strings.Fields(final[0].args)
			if b := base[len(base)-1]; b != "scratch" && !strings.HasPrefix(b, "gcr.io/distroless/static") {
				t.Errorf("final base %q, want scratch or distroless static", b)
			}
			if !strings.Contains(ins[stages[0]].args, "golang:") {
				t.Errorf("builder stage %q is not a golang image", ins[stages[0]].args)
			}

			var build string
			cgoOff := false
			for _, in := range builder {
				if in.cmd == "ENV" && strings.Contains(in.args, "CGO_ENABLED=0") {
					cgoOff = true
				}
				if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
					build = in.args
				}
			}
			if build == "" {
				t.Fatal("no go build in the builder stage")
			}
			if !cgoOff && !strings.Contains(build, "CGO_ENABLED=0") {
				t.Error("CGO_ENABLED=0 not set: the binary would not be static")
			}
			for _, want := range []string{buildFlags, `-ldflags "` + ldflags + `"`, "-o /out/" + tc.binary, tc.pkg} {
				if !strings.Contains(build, want) {
					t.Errorf("go build %q lacks %q", build, want)
				}
			}

			var user, expose, entry string
			copiesCA := false
			for _, in := range final {
				switch in.cmd {
				case "USER":
					user = in.args
				case "EXPOSE":
					expose = in.args
				case "ENTRYPOINT":
					entry = in.args
				case "COPY":
					if strings.Contains(in.args, "ca-certificates.crt") {
						copiesCA = true
					}
				}
			}
			if user != "65532:65532" {
				t.Errorf("final USER %q, want 65532:65532 (non-root)", user)
			}
			if expose != tc.port {
				t.Errorf("EXPOSE %q, want %s", expose, tc.port)
			}
			if !strings.Contains(entry, tc.binary) {
				t.Errorf("ENTRYPOINT %q does not run %s", entry, tc.binary)
			}
			if !copiesCA && base[len(base)-1] == "scratch" {
				t.Error("scratch image without CA certificates")
			}
		})
	}
}

// The server image is built for the architecture the Fargate stack runs by
// default: the Makefile's SERVER_IMAGE_PLATFORM, fargate.yaml's
// CpuArchitecture default and the README's build command must agree, and the
// Dockerfile must compile for the platform it is asked for.
func TestServerImageArchitecture(t *testing.T) {
	t.Parallel()
	platform := makeVar(t, "SERVER_IMAGE_PLATFORM")
	goarch := strings.TrimPrefix(platform, "linux/")
	fargateArch := map[string]string{"arm64": "ARM64", "amd64": "X86_64"}[goarch]
	if fargateArch == "" {
		t.Fatalf("SERVER_IMAGE_PLATFORM %q is not linux/arm64 or linux/amd64 (Fargate's two)", platform)
	}
	if goarch != "arm64" {
		t.Errorf("SERVER_IMAGE_PLATFORM = %s, want linux/arm64 (ARM64 Fargate is the default)", platform)
	}

	tpl := templateMap(t, "fargate.yaml")
	param := dig(t, tpl, "Parameters", "CpuArchitecture").(map[string]any)
	if param["Default"] != fargateArch {
		t.Errorf("fargate.yaml CpuArchitecture default %v, want %s (the image is %s)", param["Default"], fargateArch, platform)
	}
	allowed := fmt.Sprint(param["AllowedValues"])
	for _, a := range []string{"ARM64", "X86_64"} {
		if !strings.Contains(allowed, a) {
			t.Errorf("CpuArchitecture does not allow %s (allowed %s)", a, allowed)
		}
	}
	rp := dig(t, tpl, "Resources", "TaskDefinition", "Properties", "RuntimePlatform")
	if want := map[string]any{"OperatingSystemFamily": "LINUX", "CpuArchitecture": "CpuArchitecture"}; !reflect.DeepEqual(rp, want) {
		t.Errorf("RuntimePlatform = %v, want %v (CpuArchitecture from the parameter)", rp, want)
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	builds := regexp.MustCompile(`(?m)^docker buildx build --platform (\S+) -f infra/Dockerfile\.server`).FindAllSubmatch(readme, -1)
	if len(builds) == 0 {
		t.Fatal("README has no `docker buildx build --platform … -f infra/Dockerfile.server` command")
	}
	for _, b := range builds {
		if string(b[1]) != platform {
			t.Errorf("README builds the server image for %s, want %s", b[1], platform)
		}
	}

	// The builder runs natively and cross-compiles to the requested platform:
	// TARGETARCH must come from --platform, so it has no default to pin it.
	ins := parseDockerfile(t, "Dockerfile.server")
	var fromBuild, archArg, build bool
	for _, in := range ins {
		switch {
		case in.cmd == "FROM" && strings.Contains(in.args, "--platform=$BUILDPLATFORM") && strings.Contains(in.args, "golang:"):
			fromBuild = true
		case in.cmd == "ARG" && strings.HasPrefix(in.args, "TARGETARCH"):
			if in.args != "TARGETARCH" {
				t.Errorf("ARG %s: TARGETARCH must have no default, --platform sets it", in.args)
			}
			archArg = true
		case in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "GOARCH=$TARGETARCH"):
			build = true
		}
	}
	if !fromBuild || !archArg || !build {
		t.Errorf("Dockerfile.server: builder FROM --platform=$BUILDPLATFORM %v, ARG TARGETARCH %v, go build with GOARCH=$TARGETARCH %v", fromBuild, archArg, build)
	}
}
