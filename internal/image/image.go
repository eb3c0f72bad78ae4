// Package image builds Fluidity's container images (OCI, multi-arch) from
// binaries already built, without a container engine and without a base image:
// each image is an empty base plus two layers, a small one shared by every
// image and architecture (the CA bundle, /etc/passwd) and one with the binary.
// Everything in them is a function of the inputs, so the same binaries and
// Options give the same digests on any machine.
package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/platform"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the UID and GID the images run as when Options leave them unset:
// distroless's "nonroot", so volume permissions set up for those images fit.
const NonRoot = 65532

// CABundlePath is where Options.CABundle is installed: the first place Go's
// crypto/x509 looks on Linux.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// The OCI annotation (and label) keys the images carry.
const (
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelSource      = "org.opencontainers.image.source"
	LabelCreated     = "org.opencontainers.image.created"
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
)

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid image options")

// Platform is an operating system and CPU architecture, as in "linux/arm64"
// (platform.Parse reads one).
type Platform = platform.Platform

// Platforms are the images' platforms: Fargate's two architectures.
func Platforms() []Platform {
	return []Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}}
}

// DistBinaries maps each platform to the binary `make build` and `make images`
// write for it into dir: dir/<binary>-<os>-<arch>, such as
// dist/fluidity-server-linux-arm64. The files are not checked: Build reports
// a missing one.
func DistBinaries(dir, binary string, platforms ...Platform) map[Platform]string {
	m := make(map[Platform]string, len(platforms))
	for _, p := range platforms {
		m[p] = filepath.Join(dir, binary+"-"+p.OS+"-"+p.Arch)
	}
	return m
}

// Options describe one image around its binary. The zero value of every field
// but Binary means its default.
type Options struct {
	// Binary is the program's name in the image: it is installed as /<Binary>
	// and is the entrypoint. Required.
	Binary string
	// Cmd are default arguments after the entrypoint.
	Cmd []string
	// Version, Revision (the commit) and Source (the repository URL) become
	// the org.opencontainers.image.* labels.
	Version, Revision, Source string
	// Title and Description are the image's human-readable labels.
	Title, Description string
	// Created is the images' creation time and the modification time of every
	// file in them; zero means the Unix epoch. Set it from SOURCE_DATE_EPOCH or
	// the commit time: a wall-clock time would make every build differ.
	Created time.Time
	// Ports are the exposed TCP ports.
	Ports []int
	// Healthcheck is a command in exec form (no shell: the images have none),
	// e.g. ["/fluidity-server", "healthcheck"]; empty means no health check.
	Healthcheck []string
	// HealthInterval, HealthTimeout, HealthStartPeriod and HealthRetries tune
	// the health check; zero means 15 s, 5 s, 10 s and 3 (as infra/fargate.yaml).
	HealthInterval, HealthTimeout, HealthStartPeriod time.Duration
	HealthRetries                                    int
	// CABundle is PEM installed at CABundlePath, for a program that verifies
	// TLS servers on the internet; nil leaves it out.
	CABundle []byte
	// UID and GID the program runs as; zero means NonRoot. Root cannot be
	// asked for.
	UID, GID int
	// Env are extra KEY=value variables.
	Env []string
}

// Server returns the Options of the fluidity-server image. It carries a CA
// bundle because the server verifies the certificates of https:// and wss://
// targets it dials for plain-HTTP and WebSocket requests (CONNECT tunnels are
// opaque bytes and need none); the caller supplies the bundle.
func Server() Options {
	return Options{
		Binary:      "fluidity-server",
		Title:       "fluidity-server",
		Description: "Fluidity tunnel server: accepts mTLS tunnel sessions from agents and dials targets for them",
		Ports:       []int{8443},
		Healthcheck: []string{"/fluidity-server", "healthcheck"},
	}
}

// Agent returns the Options of the fluidity-agent image. The agent listens on
// 127.0.0.1 unless configured otherwise (FLUIDITY_AGENT_LISTEN_ADDR=0.0.0.0 in
// a container, with the port published only to the host). It has no health
// check command: its health is GET /healthz on the proxy port, and the image
// has no HTTP client to ask it with.
func Agent() Options {
	return Options{
		Binary:      "fluidity-agent",
		Title:       "fluidity-agent",
		Description: "Fluidity tunnel agent: a local HTTP proxy that forwards through a Fluidity server",
		Ports:       []int{8080},
	}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case o.Binary == "" || strings.ContainsAny(o.Binary, "/\\") || o.Binary == "." || o.Binary == "..":
		return bad("binary %q is not a file name", o.Binary)
	case o.UID < 0 || o.GID < 0:
		return bad("uid %d and gid %d must not be negative", o.UID, o.GID)
	case o.HealthInterval < 0 || o.HealthTimeout < 0 || o.HealthStartPeriod < 0 || o.HealthRetries < 0:
		return bad("health check timings must not be negative")
	case !o.Created.IsZero() && o.Created.Before(time.Unix(0, 0)):
		return bad("created %v is before the Unix epoch", o.Created)
	}
	for _, p := range o.Ports {
		if p < 1 || p > 65535 {
			return bad("port %d is not a port", p)
		}
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return bad("env %q is not KEY=value", kv)
		}
	}
	return nil
}

// withDefaults returns a copy with defaults filled in; the caller's slices are
// not shared.
func (o Options) withDefaults() Options {
	if o.UID == 0 {
		o.UID = NonRoot
	}
	if o.GID == 0 {
		o.GID = NonRoot
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	// Tar headers and the config carry whole seconds only.
	o.Created = o.Created.UTC().Truncate(time.Second)
	if o.HealthInterval == 0 {
		o.HealthInterval = 15 * time.Second
	}
	if o.HealthTimeout == 0 {
		o.HealthTimeout = 5 * time.Second
	}
	if o.HealthStartPeriod == 0 {
		o.HealthStartPeriod = 10 * time.Second
	}
	if o.HealthRetries == 0 {
		o.HealthRetries = 3
	}
	o.Cmd = slices.Clone(o.Cmd)
	o.Ports = slices.Clone(o.Ports)
	o.Healthcheck = slices.Clone(o.Healthcheck)
	o.Env = slices.Clone(o.Env)
	return o
}

// labels are the config's labels.
func (o Options) labels() map[string]string {
	l := map[string]string{LabelCreated: o.Created.Format(time.RFC3339)}
	for k, v := range map[string]string{
		LabelVersion: o.Version, LabelRevision: o.Revision, LabelSource: o.Source,
		LabelTitle: o.Title, LabelDescription: o.Description,
	} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// Build returns a multi-arch image index with one image per platform, each
// built from the binary at the path given for it (a static executable for
// that platform, as `make build` writes into dist/).
//
// The index and images have Docker's media types (manifest list, schema 2),
// not OCI's: the health check is a Docker field of the config, and podman
// drops it from an image whose config is OCI-typed. Docker, podman,
// containerd, ECR and Fargate all take these.
func Build(ctx context.Context, binaries map[Platform]string, opts Options) (v1.ImageIndex, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(binaries) == 0 {
		return nil, fmt.Errorf("%w: no binaries", ErrInvalid)
	}
	o := opts.withDefaults()
	base, err := baseLayer(o)
	if err != nil {
		return nil, err
	}
	platforms := make([]Platform, 0, len(binaries))
	for p := range binaries {
		platforms = append(platforms, p)
	}
	// A fixed order: the index's manifest list is part of its digest.
	slices.SortFunc(platforms, func(a, b Platform) int { return strings.Compare(a.String(), b.String()) })

	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bin, err := os.ReadFile(binaries[p])
		if err != nil {
			return nil, fmt.Errorf("image %s for %s: %w", o.Binary, p, err)
		}
		img, err := platformImage(o, p, base, bin)
		if err != nil {
			return nil, fmt.Errorf("image %s for %s: %w", o.Binary, p, err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.DockerManifestList), nil
}

// platformImage is one platform's image: the shared base layer, the binary's
// layer and the config.
func platformImage(o Options, p Platform, base fileLayer, bin []byte) (v1.Image, error) {
	binLayer, err := newLayer([]file{{path: o.Binary, mode: 0o755, data: bin}}, o.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.DockerManifestSchema2), types.DockerConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = config(o)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	return mutate.Append(img,
		mutate.Addendum{Layer: base.layer, History: v1.History{Created: created, CreatedBy: base.createdBy, Comment: "fluidity image"}},
		mutate.Addendum{Layer: binLayer.layer, History: v1.History{Created: created, CreatedBy: "COPY " + o.Binary + " /" + o.Binary, Comment: "fluidity image"}},
	)
}

// config is the runtime configuration: entrypoint, user, ports, health check
// (a Docker-format field, which podman and Docker read from OCI configs too)
// and labels.
func config(o Options) v1.Config {
	c := v1.Config{
		Entrypoint: []string{"/" + o.Binary},
		Cmd:        o.Cmd,
		User:       strconv.Itoa(o.UID) + ":" + strconv.Itoa(o.GID),
		WorkingDir: "/",
		Env:        o.Env,
		Labels:     o.labels(),
	}
	if len(o.Ports) > 0 {
		c.ExposedPorts = map[string]struct{}{}
		for _, p := range o.Ports {
			c.ExposedPorts[strconv.Itoa(p)+"/tcp"] = struct{}{}
		}
	}
	if len(o.Healthcheck) > 0 {
		c.Healthcheck = &v1.HealthConfig{
			Test:        append([]string{"CMD"}, o.Healthcheck...),
			Interval:    o.HealthInterval,
			Timeout:     o.HealthTimeout,
			StartPeriod: o.HealthStartPeriod,
			Retries:     o.HealthRetries,
		}
	}
	return c
}
