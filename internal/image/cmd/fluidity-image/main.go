// Command fluidity-image builds the server and agent images from the binaries
// `make build` leaves in dist/ (fluidity-server-linux-arm64, …) and writes each
// as an OCI archive (dist/images/NAME.oci.tar, for podman/docker load) and an
// OCI layout directory (dist/images/NAME/, for skopeo or crane to push).
// `make images` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/image"
	"github.com/fluidity-tunnel/fluidity/internal/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Getenv("SOURCE_DATE_EPOCH"), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, sourceDateEpoch string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fluidity-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dist := fs.String("dist", "dist", "directory holding fluidity-NAME-OS-ARCH binaries")
	out := fs.String("out", "dist/images", "directory the images are written into")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "platforms of the multi-arch index (comma or space separated)")
	names := fs.String("images", "server,agent", "which images: server, agent")
	version := fs.String("version", "dev", "the version label and tag")
	revision := fs.String("revision", "", "the commit, for the org.opencontainers.image.revision label")
	source := fs.String("source", "https://github.com/fluidity-tunnel/fluidity", "the repository, for the org.opencontainers.image.source label")
	created := fs.String("created", sourceDateEpoch, "creation time in Unix seconds (default $SOURCE_DATE_EPOCH, else 0): fixed, so builds are reproducible")
	caBundle := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle (PEM) installed in the images")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "fluidity-image:", err)
		return 1
	}

	var when time.Time
	if *created != "" {
		secs, err := strconv.ParseInt(*created, 10, 64)
		if err != nil {
			return fail(fmt.Errorf("-created %q: want Unix seconds", *created))
		}
		when = time.Unix(secs, 0)
	}
	var plats []image.Platform
	for _, s := range strings.FieldsFunc(*platforms, func(r rune) bool { return r == ',' || r == ' ' }) {
		p, err := platform.Parse(s)
		if err != nil {
			return fail(err)
		}
		plats = append(plats, p)
	}
	ca, err := os.ReadFile(*caBundle)
	if err != nil {
		return fail(fmt.Errorf("the server image needs a CA bundle for https targets: %w", err))
	}

	for _, name := range strings.Split(*names, ",") {
		var opts image.Options
		switch name {
		case "server":
			opts = image.Server()
		case "agent":
			opts = image.Agent()
		default:
			return fail(fmt.Errorf("-images: unknown image %q (server, agent)", name))
		}
		opts.Version, opts.Revision, opts.Source, opts.Created = *version, *revision, *source, when
		// The server verifies https:// and wss:// targets; the agent verifies
		// the Wake/Kill API (API Gateway) and https:// upstream proxies.
		opts.CABundle = ca
		digest, err := write(ctx, *out, image.DistBinaries(*dist, opts.Binary, plats...), opts)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s:%s %s (%s) in %s\n", opts.Binary, *version, digest, *platforms, *out)
	}
	return 0
}

// write builds one image and writes its archive and layout, replacing earlier ones.
func write(ctx context.Context, out string, bins map[image.Platform]string, opts image.Options) (string, error) {
	idx, err := image.Build(ctx, bins, opts)
	if err != nil {
		return "", err
	}
	ref := opts.Binary + ":" + opts.Version
	if err := os.MkdirAll(out, 0o755); err != nil { // #nosec G301 -- dist/: build output others read
		return "", err
	}
	dir := filepath.Join(out, opts.Binary)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := image.WriteLayout(dir, idx, ref); err != nil {
		return "", err
	}
	archive := filepath.Join(out, opts.Binary+".oci.tar")
	f, err := os.Create(archive + ".tmp")
	if err != nil {
		return "", err
	}
	if err := image.WriteArchive(f, idx, ref, opts.Created); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(archive+".tmp", archive); err != nil {
		return "", err
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
