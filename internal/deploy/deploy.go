// Package deploy creates, upgrades and removes a Fluidity deployment on AWS
// in one run: the server's TLS secret, the image repository and push, the
// Lambda code in S3, and the two CloudFormation stacks (infra/fargate.yaml,
// infra/control-plane.yaml) wired through the Fargate stack's outputs. It is
// what `fluidity deploy` and `fluidity destroy` run; the README's manual
// walk-through does the same steps by hand.
//
// Every step first reads what exists and changes only what differs, so a
// second run with the same inputs changes nothing: the secret is rewritten
// only when the material differs, the image and the Lambda zips are addressed
// by digest (same bytes, same parameter), and each stack update goes through
// a change set that is deleted unexecuted when CloudFormation finds nothing
// to change.
package deploy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"time"
)

// ErrInvalid is wrapped by every error Config.Validate returns.
var ErrInvalid = errors.New("invalid deploy configuration")

// ErrNoAPIKey is returned (wrapped) when the control-plane stack has no
// ApiKeyId output, so the key cannot be fetched.
var ErrNoAPIKey = errors.New("the control-plane stack has no ApiKeyId output")

// DefaultName prefixes every resource: stacks <name>-server and
// <name>-control, secret <name>/server-tls, repository <name>-server, ECS
// cluster <name> and service <name>-server, bucket <name>-artifacts-….
const DefaultName = "fluidity"

// DefaultMetricsInterval is the server's metrics interval unless told
// otherwise: the server's own default and both templates'.
const DefaultMetricsInterval = 60 * time.Second

// idleThreshold is the control-plane template's IdleThreshold, which deploy
// leaves at its default. The Sleep Lambda counts only datapoints younger than
// it: a server publishing less often looks idle while in use.
const idleThreshold = 15 * time.Minute

// ManagedTag marks what deploy created, so destroy removes only that (a
// bucket or repository you named yourself and made by hand stays).
const (
	ManagedTagKey   = "fluidity:managed-by"
	ManagedTagValue = "fluidity deploy"
)

// Config is what one deploy or destroy works on. The zero value (plus an
// image and the certificate directory for deploy) means the defaults.
type Config struct {
	// Name prefixes every resource (DefaultName).
	Name string
	// CertDir holds server.crt, server.key and ca.crt, as `fluidity certs`
	// writes them ("./certs").
	CertDir string

	// Image is a server image URI used as it is (nothing is pushed and no
	// repository is created). Exclusive with ImageLayout.
	Image string
	// ImageLayout is an OCI image layout directory (one image, or an index
	// of per-platform images) pushed to the <name>-server ECR repository.
	ImageLayout string
	// ImageTag tags the pushed image for people; the stack is given the
	// digest, so a rebuilt image under an old tag still upgrades. Default:
	// the tag the layout names its image with (`make images` names it by
	// version), else "latest".
	ImageTag string

	// Arch is the CPU architecture of the server image and the Lambdas:
	// "arm64" (default, Graviton, cheaper) or "amd64".
	Arch string
	// LambdaDir holds prebuilt wake.zip, sleep.zip and kill.zip (each one
	// "bootstrap" binary for linux/Arch). Empty: they are built from
	// SourceDir with the go command.
	LambdaDir string
	// SourceDir is the Fluidity module's root, for building the Lambdas.
	SourceDir string

	// Bucket for the Lambda code; default <name>-artifacts-<account>-<region>,
	// created when missing.
	Bucket string
	// VpcID and SubnetIDs place the server; default the default VPC and its
	// subnets that give instances a public IP.
	VpcID     string
	SubnetIDs []string
	// AllowedCidr may reach the tunnel port (the template's default when empty).
	AllowedCidr string
	// MetricsInterval is how often the server publishes its metrics, given
	// to both stacks (the server's MetricsInterval and the Kill Lambda's, which
	// reads its window from it: the two must agree); whole seconds, default
	// DefaultMetricsInterval.
	MetricsInterval time.Duration

	// DryRun reports what would change without changing anything
	// (CloudFormation change sets are created, described and deleted).
	DryRun bool

	// Out receives progress (stack events, what was created or changed).
	// Nil discards it.
	Out io.Writer
	// PollInterval between stack status checks; default 5 s.
	PollInterval time.Duration
	// RegistryTransport carries image pushes; nil is the default transport.
	// Tests route the registry's host to a local registry with it.
	RegistryTransport http.RoundTripper
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// Validate checks c without changing it.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		return bad("name %q: want 1-20 lowercase letters, digits and dashes, starting with a letter", c.Name)
	}
	if c.Image != "" && c.ImageLayout != "" {
		return bad("give an image URI or an image layout, not both")
	}
	switch c.Arch {
	case "", "arm64", "amd64":
	default:
		return bad("arch %q: want arm64 or amd64", c.Arch)
	}
	if c.AllowedCidr != "" {
		if _, _, err := net.ParseCIDR(c.AllowedCidr); err != nil {
			return bad("allowed CIDR: %v", err)
		}
	}
	if c.MetricsInterval != 0 && (c.MetricsInterval < time.Second || c.MetricsInterval%time.Second != 0) {
		return bad("metrics interval %v: want whole seconds, at least 1s", c.MetricsInterval)
	}
	if c.MetricsInterval >= idleThreshold {
		return bad("metrics interval %v: want it well under the Sleep Lambda's idle threshold (%v), which would see a server publishing this rarely as idle", c.MetricsInterval, idleThreshold)
	}
	if c.PollInterval < 0 {
		return bad("poll interval %v is negative", c.PollInterval)
	}
	return nil
}

// withDefaults returns a copy of c with the zero values filled in.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.CertDir == "" {
		c.CertDir = "certs"
	}
	if c.Arch == "" {
		c.Arch = "arm64"
	}
	if c.MetricsInterval == 0 {
		c.MetricsInterval = DefaultMetricsInterval
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return c
}

// names are the resources one Name stands for.
type names struct {
	serverStack, controlStack string
	secret, repo              string
	cluster, service          string
	// prefix of every S3 key deploy writes
	keyPrefix string
}

func namesFor(name string) names {
	return names{
		serverStack:  name + "-server",
		controlStack: name + "-control",
		secret:       name + "/server-tls",
		repo:         name + "-server",
		cluster:      name,
		service:      name + "-server",
		keyPrefix:    name + "/",
	}
}

// Template parameter values for an architecture.
func cpuArchitecture(arch string) string {
	if arch == "amd64" {
		return "X86_64"
	}
	return "ARM64"
}

func lambdaArchitecture(arch string) string {
	if arch == "amd64" {
		return "x86_64"
	}
	return "arm64"
}

// Result is what a deploy ends with: what the agent needs.
type Result struct {
	// APIEndpoint is the wake/kill API's stage URL (lifecycle.api_endpoint).
	APIEndpoint string
	// APIKeyID names the API key; APIKey is its value (lifecycle.api_key).
	APIKeyID string
	APIKey   string
	// Image is the image URI the server stack runs.
	Image string
}
