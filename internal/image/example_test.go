package image_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/image"
)

// The server image from the binaries `make build` left in dist/, written as an
// OCI archive. To push it instead, hand the index to go-containerregistry's
// remote.WriteIndex(ref, idx, remote.WithAuth(…)).
func ExampleBuild() {
	opts := image.Server()
	opts.Version, opts.Revision = "v1.2.0", "0123456789abcdef0123456789abcdef01234567"
	opts.Created = time.Unix(1764590400, 0) // the commit's time: reproducible digests
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		log.Fatal(err)
	}
	opts.CABundle = ca

	idx, err := image.Build(context.Background(), image.DistBinaries("dist", opts.Binary, image.Platforms()...), opts)
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.Create("dist/images/fluidity-server.oci.tar")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := image.WriteArchive(f, idx, "fluidity-server:"+opts.Version, opts.Created); err != nil {
		log.Fatal(err)
	}
}
