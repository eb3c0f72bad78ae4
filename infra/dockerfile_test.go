package infra_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/image"
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

// The Dockerfiles wrap the binaries `make build` writes into dist/: nothing is
// compiled in them and no image is pulled (FROM scratch, no `# syntax=`
// frontend, no RUN), so Docker needs no registry and the binary is the one the
// Makefile stamped.
func TestDockerfiles(t *testing.T) {
	t.Parallel()
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file, binary, port string
	}{
		{"Dockerfile.server", "fluidity-server", "8443"},
		{"Dockerfile.agent", "fluidity-agent", "8080"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if regexp.MustCompile(`(?mi)^#\s*syntax\s*=`).Match(raw) {
				t.Error("a `# syntax=` line makes BuildKit pull a frontend image")
			}
			ins := parseDockerfile(t, tc.file)
			var froms []string
			var user, expose, entry string
			var copies []string
			archArg := false
			for _, in := range ins {
				switch in.cmd {
				case "FROM":
					froms = append(froms, in.args)
				case "RUN":
					t.Errorf("RUN %s: the image must be built from dist/, not compiled or installed into", in.args)
				case "ARG":
					if strings.HasPrefix(in.args, "TARGETARCH") {
						archArg = true
						if in.args != "TARGETARCH" {
							t.Errorf("ARG %s: TARGETARCH must have no default, --platform sets it", in.args)
						}
					}
				case "COPY", "ADD":
					copies = append(copies, in.args)
				case "USER":
					user = in.args
				case "EXPOSE":
					expose = in.args
				case "ENTRYPOINT":
					entry = in.args
				}
			}
			if len(froms) != 1 || froms[0] != "scratch" {
				t.Errorf("FROM %q, want one stage FROM scratch (nothing to pull)", froms)
			}
			if !archArg {
				t.Error("no ARG TARGETARCH: the binary would not follow --platform")
			}
			bin := "dist/" + tc.binary + "-linux-${TARGETARCH} /" + tc.binary
			ca := "dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt"
			if !slices.Contains(copies, bin) || !slices.Contains(copies, ca) {
				t.Errorf("COPY %q, want %q and %q", copies, bin, ca)
			}
			// The Makefile writes the files the Dockerfile copies, with the same names.
			for _, want := range []string{"-o dist/fluidity-$$d-$$os-$$arch", "dist/ca-certificates.crt:"} {
				if !strings.Contains(string(makefile), want) {
					t.Errorf("Makefile lacks %q, which %s needs", want, tc.file)
				}
			}
			if user != "65532:65532" {
				t.Errorf("USER %q, want 65532:65532 (non-root)", user)
			}
			if expose != tc.port {
				t.Errorf("EXPOSE %q, want %s", expose, tc.port)
			}
			if entry != `["/`+tc.binary+`"]` {
				t.Errorf("ENTRYPOINT %s, want [\"/%s\"]", entry, tc.binary)
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

	// `make cross` builds the server for that platform, so the Dockerfile,
	// which copies dist/fluidity-server-linux-$TARGETARCH, finds it.
	if !strings.Contains(makeTarget(t, "cross-agents"), "SERVER_IMAGE_PLATFORM") {
		t.Error("make cross-agents does not build the server for SERVER_IMAGE_PLATFORM")
	}
	if !strings.Contains(makeTarget(t, "cross"), "cross-agents") {
		t.Error("make cross does not build through cross-agents")
	}
}

// makeTarget returns the recipe of a Makefile target, up to the next blank line.
func makeTarget(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?ms)^` + regexp.QuoteMeta(name) + `:.*?\n\n`).Find(b)
	if m == nil {
		t.Fatalf("Makefile has no target %s", name)
	}
	return string(m)
}

// The server's health check is the same command with the same timings in the
// image internal/image builds, in Dockerfile.server and in the Fargate task
// (which sets its own: ECS ignores an image's).
func TestHealthCheckAgrees(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "fluidity-server")
	if err := os.WriteFile(bin, []byte("not run"), 0o600); err != nil {
		t.Fatal(err)
	}
	plat := image.Platform{OS: "linux", Arch: "arm64"}
	idx, err := image.Build(context.Background(), map[image.Platform]string{plat: bin}, image.Server())
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	hc := cf.Config.Healthcheck
	if hc == nil {
		t.Fatal("the server image has no health check")
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

	tpl := templateMap(t, "fargate.yaml")
	if got, want := fmt.Sprint(dig(t, tpl, "Parameters", "HealthCheckCommand", "Default")), strings.Join(hc.Test, ","); got != want {
		t.Errorf("fargate.yaml HealthCheckCommand default %q, the image's %q", got, want)
	}
	task := dig(t, tpl, "Resources", "TaskDefinition", "Properties", "ContainerDefinitions", 0, "HealthCheck").(map[string]any)
	for k, want := range map[string]string{
		"Interval": secs(hc.Interval), "Timeout": secs(hc.Timeout), "StartPeriod": secs(hc.StartPeriod), "Retries": strconv.Itoa(hc.Retries),
	} {
		if got := fmt.Sprint(task[k]); got != want {
			t.Errorf("fargate.yaml HealthCheck %s %s, the image's %s", k, got, want)
		}
	}

	var dockerfile string
	for _, in := range parseDockerfile(t, "Dockerfile.server") {
		if in.cmd == "HEALTHCHECK" {
			dockerfile = in.args
		}
	}
	cmdForm := `CMD ["` + strings.Join(hc.Test[1:], `", "`) + `"]`
	want := fmt.Sprintf("--interval=%ss --timeout=%ss --start-period=%ss --retries=%d %s",
		secs(hc.Interval), secs(hc.Timeout), secs(hc.StartPeriod), hc.Retries, cmdForm)
	if dockerfile != want {
		t.Errorf("Dockerfile.server HEALTHCHECK %q, want %q (as the image built by make images)", dockerfile, want)
	}
}
