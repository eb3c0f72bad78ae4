package deploy

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ensureImage returns the image URI the server stack is to run: the given
// URI, or the layout's image pushed to the ECR repository, by digest.
func (d *Deployer) ensureImage(ctx context.Context) (string, error) {
	if d.cfg.Image != "" {
		d.say("image: %s (given; nothing pushed)", d.cfg.Image)
		return d.cfg.Image, nil
	}
	if d.cfg.ImageLayout == "" {
		return "", fmt.Errorf("%w: no server image: give an image URI, or an OCI image layout to push", ErrInvalid)
	}
	art, err := readLayout(d.cfg.ImageLayout, d.cfg.Arch)
	if err != nil {
		return "", err
	}
	repoURI, err := d.ensureRepository(ctx)
	if err != nil {
		return "", err
	}
	if repoURI == "" { // dry run, no repository yet
		d.say("image: would push %s (%s) as %s:%s", d.cfg.ImageLayout, art.digest, d.n.repo, d.imageTag(art))
		return d.n.repo + "@" + art.digest.String(), nil
	}
	uri := repoURI + "@" + art.digest.String()
	tag, err := name.NewTag(repoURI + ":" + d.imageTag(art))
	if err != nil {
		return "", fmt.Errorf("image tag: %w", err)
	}
	opts, err := d.registryOptions(ctx)
	if err != nil {
		return "", err
	}
	if desc, err := remote.Head(tag, opts...); err == nil && desc.Digest == art.digest {
		d.say("image: %s:%s is %s already", repoURI, d.cfg.ImageTag, art.digest)
		return uri, nil
	}
	if d.cfg.DryRun {
		d.say("image: would push %s (%s) as %s", d.cfg.ImageLayout, art.digest, tag)
		return uri, nil
	}
	d.say("image: pushing %s to %s", d.cfg.ImageLayout, tag)
	if art.index != nil {
		err = remote.WriteIndex(tag, art.index, opts...)
	} else {
		err = remote.Write(tag, art.image, opts...)
	}
	if err != nil {
		return "", fmt.Errorf("image push to %s: %w", tag, err)
	}
	d.say("image: pushed %s", uri)
	return uri, nil
}

// artifact is what a layout holds: one image or one index.
type artifact struct {
	image  v1.Image
	index  v1.ImageIndex
	digest v1.Hash
	// refName is the layout's name for it ("fluidity-server:v1.2.0"), if any.
	refName string
}

func (d *Deployer) imageTag(a artifact) string {
	if d.cfg.ImageTag != "" {
		return d.cfg.ImageTag
	}
	if _, tag, ok := strings.Cut(a.refName, ":"); ok && tag != "" {
		if _, err := name.NewTag("x:" + tag); err == nil {
			return tag
		}
	}
	return "latest"
}

// readLayout opens an OCI layout and checks that it can run on linux/arch,
// so a wrong build fails here and not as "exec format error" on Fargate.
func readLayout(dir, arch string) (artifact, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return artifact{}, fmt.Errorf("image layout %s: %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return artifact{}, fmt.Errorf("image layout %s: %w", dir, err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		return artifact{}, fmt.Errorf("image layout %s: %w", dir, err)
	}
	var a artifact
	if len(im.Manifests) == 1 {
		a.refName = im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	}
	switch {
	case len(im.Manifests) == 0:
		return a, fmt.Errorf("image layout %s holds no image", dir)
	case len(im.Manifests) == 1 && im.Manifests[0].MediaType.IsImage():
		if a.image, err = top.Image(im.Manifests[0].Digest); err != nil {
			return a, fmt.Errorf("image layout %s: %w", dir, err)
		}
	case len(im.Manifests) == 1 && im.Manifests[0].MediaType.IsIndex():
		if a.index, err = top.ImageIndex(im.Manifests[0].Digest); err != nil {
			return a, fmt.Errorf("image layout %s: %w", dir, err)
		}
	default:
		// Several per-platform images side by side: the layout's own index
		// is a valid multi-platform index.
		a.index = top
	}
	var platforms []string
	if a.image != nil {
		cf, err := a.image.ConfigFile()
		if err != nil {
			return a, fmt.Errorf("image layout %s: %w", dir, err)
		}
		platforms = append(platforms, cf.OS+"/"+cf.Architecture)
		a.digest, err = a.image.Digest()
		if err != nil {
			return a, err
		}
	} else {
		m, err := a.index.IndexManifest()
		if err != nil {
			return a, fmt.Errorf("image layout %s: %w", dir, err)
		}
		for _, desc := range m.Manifests {
			if desc.Platform != nil {
				platforms = append(platforms, desc.Platform.OS+"/"+desc.Platform.Architecture)
			}
		}
		a.digest, err = a.index.Digest()
		if err != nil {
			return a, err
		}
	}
	if want := "linux/" + arch; !slices.Contains(platforms, want) {
		return a, fmt.Errorf("image layout %s is for %s, not %s (build the image for %s, or deploy with the matching architecture)",
			dir, strings.Join(platforms, ", "), want, want)
	}
	return a, nil
}

// ensureRepository returns the ECR repository's URI, creating the repository
// when missing ("" in a dry run that would create it).
func (d *Deployer) ensureRepository(ctx context.Context) (string, error) {
	out, err := d.ecr.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{d.n.repo}})
	if err == nil && len(out.Repositories) == 1 {
		return aws.ToString(out.Repositories[0].RepositoryUri), nil
	}
	if err != nil && apiErrorCode(err) != "RepositoryNotFoundException" {
		return "", fmt.Errorf("ecr repository %s: %w", d.n.repo, err)
	}
	if d.cfg.DryRun {
		d.say("ecr repository %s: would create", d.n.repo)
		return "", nil
	}
	created, err := d.ecr.CreateRepository(ctx, &ecr.CreateRepositoryInput{
		RepositoryName:             aws.String(d.n.repo),
		ImageScanningConfiguration: &ecrtypes.ImageScanningConfiguration{ScanOnPush: true},
		Tags:                       []ecrtypes.Tag{{Key: aws.String(ManagedTagKey), Value: aws.String(ManagedTagValue)}},
	})
	if err != nil {
		return "", fmt.Errorf("ecr repository %s: create: %w", d.n.repo, err)
	}
	d.say("ecr repository %s: created", d.n.repo)
	return aws.ToString(created.Repository.RepositoryUri), nil
}

// registryOptions authenticate to ECR with a token from GetAuthorizationToken
// (what `aws ecr get-login-password` prints), no Docker credential helper.
func (d *Deployer) registryOptions(ctx context.Context) ([]remote.Option, error) {
	out, err := d.ecr.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		return nil, fmt.Errorf("ecr login: %w", err)
	}
	if len(out.AuthorizationData) == 0 {
		return nil, fmt.Errorf("ecr login: no authorization data")
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.AuthorizationData[0].AuthorizationToken))
	if err != nil {
		return nil, fmt.Errorf("ecr login: token: %w", err)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil, fmt.Errorf("ecr login: token is not user:password")
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: user, Password: pass})}
	if d.cfg.RegistryTransport != nil {
		opts = append(opts, remote.WithTransport(d.cfg.RegistryTransport))
	}
	return opts, nil
}
