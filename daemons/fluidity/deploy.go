//go:build !fluidity_nodeploy

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/pflag"

	"github.com/fluidity-tunnel/fluidity/internal/deploy"
)

// stdin answers destroy's question; tests replace it.
var stdin io.Reader = os.Stdin

const deployUsageHead = `Usage: fluidity deploy [flags]

Creates or updates the whole AWS deployment with your AWS credentials (the
SDK's default chain: environment, profile, SSO): the server's TLS secret from
--cert-dir, the image repository and push (or --image), the Lambda code in S3,
and the two CloudFormation stacks. Prints the wake/kill API endpoint and key
at the end; --write-config puts them into an agent.yaml. Running it again
changes nothing; after a version change it upgrades. --dry-run only shows
what would change (CloudFormation change sets, not executed).

Flags:
`

const destroyUsageHead = `Usage: fluidity destroy [flags]

Removes what 'fluidity deploy' made: both stacks, the TLS secret, the image
repository and the Lambda code (and the bucket, if deploy created it). Asks
first unless --yes.

Flags:
`

// awsFlags are shared by deploy and destroy.
type awsFlags struct {
	region, profile, endpoint string
}

func (a *awsFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&a.region, "region", "", "AWS region (default: AWS_REGION or the profile's)")
	fs.StringVar(&a.profile, "profile", "", "AWS shared-config profile (default: AWS_PROFILE or default)")
	fs.StringVar(&a.endpoint, "endpoint-url", "", "AWS endpoint for every service, e.g. a local emulator (default: AWS_ENDPOINT_URL)")
}

// load reads the SDK's default configuration chain. Its HTTP transport is
// the caller's to close (idle connections) when done.
func (a *awsFlags) load(ctx context.Context) (aws.Config, *http.Transport, error) {
	var opts []func(*config.LoadOptions) error
	if a.region != "" {
		opts = append(opts, config.WithRegion(a.region))
	}
	if a.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(a.profile))
	}
	if a.endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(a.endpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return cfg, &http.Transport{}, fmt.Errorf("aws credentials: %w", err)
	}
	// The SDK's transport as the chain set it up (AWS_CA_BUNDLE and all),
	// in a client of our own, so its connections can be closed at the end.
	tr := &http.Transport{}
	if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tr = bc.GetTransport()
	}
	cfg.HTTPClient = &http.Client{Transport: tr}
	return cfg, tr, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runDeploy(args []string, stdout, stderr io.Writer) int {
	var (
		c           deploy.Config
		a           awsFlags
		writeConfig string
	)
	fs := commandFlags("fluidity deploy")
	a.add(fs)
	fs.StringVar(&c.Name, "name", deploy.DefaultName, "prefix of every resource (stacks <name>-server and <name>-control, …)")
	fs.StringVar(&c.CertDir, "cert-dir", "./certs", "directory with server.crt, server.key and ca.crt (as 'fluidity certs' writes them)")
	fs.StringVar(&c.Image, "image", "", "server image URI to run as it is (nothing is pushed)")
	fs.StringVar(&c.ImageLayout, "image-layout", "", "OCI image layout of the server image, pushed to the <name>-server ECR repository (default: dist/images/fluidity-server of the source checkout, as `make images` writes it)")
	fs.StringVar(&c.ImageTag, "tag", "", "tag for the pushed image (default: the layout's, which `make images` sets to the version; the stack runs it by digest)")
	fs.StringVar(&c.Arch, "arch", "arm64", "CPU architecture of the server image and the Lambdas: arm64 or amd64")
	fs.StringVar(&c.LambdaDir, "lambda-dir", "", "directory with prebuilt wake.zip, sleep.zip, kill.zip (default: build them from the source checkout)")
	fs.StringVar(&c.SourceDir, "source-dir", "", "Fluidity source checkout to build the Lambdas from (default: the one around the current directory)")
	fs.StringVar(&c.Bucket, "bucket", "", "S3 bucket for the Lambda code (default <name>-artifacts-<account>-<region>, created when missing)")
	fs.StringVar(&c.VpcID, "vpc", "", "VPC for the server (default: the default VPC)")
	fs.StringSliceVar(&c.SubnetIDs, "subnets", nil, "public subnets for the server (default: the VPC's subnets that map public IPs)")
	fs.StringVar(&c.AllowedCidr, "allowed-cidr", "", "who may reach the tunnel port (default 0.0.0.0/0; mTLS refuses strangers anyway)")
	fs.DurationVar(&c.MetricsInterval, "metrics-interval", deploy.DefaultMetricsInterval, "how often the server publishes its metrics (whole seconds, under the Sleep Lambda's 15m idle threshold); given to both stacks, since the Kill Lambda's window is read from it")
	fs.BoolVar(&c.DryRun, "dry-run", false, "show what would be created or changed, change nothing")
	fs.StringVar(&writeConfig, "write-config", "", "agent config file to write lifecycle.api_endpoint and lifecycle.api_key into")
	if code, done := parseCommand(fs, args, deployUsageHead, stdout, stderr); done {
		return code
	}
	src := c.SourceDir
	if src == "" {
		src = findSourceDir()
	}
	if c.LambdaDir == "" && c.SourceDir == "" {
		c.SourceDir = src
	}
	if c.Image == "" && c.ImageLayout == "" && src != "" {
		if l := filepath.Join(src, "dist", "images", "fluidity-server"); fileExists(filepath.Join(l, "index.json")) {
			c.ImageLayout = l
		}
	}
	if c.Image == "" && c.ImageLayout == "" {
		return usageError(stderr, "fluidity deploy", errors.New("no server image: run `make images` in the source checkout, or give --image URI or --image-layout DIR"))
	}
	if err := c.Validate(); err != nil {
		return usageError(stderr, "fluidity deploy", err)
	}
	c.Out = stdout

	ctx, stop := signalContext()
	defer stop()
	awsCfg, tr, err := a.load(ctx)
	defer tr.CloseIdleConnections()
	if err != nil {
		fmt.Fprintf(stderr, "fluidity deploy: %v\n", err)
		return exitError
	}
	c.RegistryTransport = tr
	d, err := deploy.New(awsCfg, c)
	if err != nil {
		return usageError(stderr, "fluidity deploy", err)
	}
	res, err := d.Deploy(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fluidity deploy: %v\n", err)
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "fluidity deploy: interrupted; CloudFormation goes on with a stack operation already started (run deploy again to see it through)")
		}
		return exitError
	}
	if c.DryRun {
		fmt.Fprintln(stdout, "dry run: nothing was changed")
		return exitOK
	}
	fmt.Fprintf(stdout, "\nserver image: %s\nlifecycle.api_endpoint: %s\nlifecycle.api_key: %s\n", res.Image, res.APIEndpoint, res.APIKey)
	if writeConfig != "" {
		if err := deploy.WriteAgentConfig(writeConfig, res, c.CertDir); err != nil {
			fmt.Fprintf(stderr, "fluidity deploy: %v\n", err)
			return exitError
		}
		fmt.Fprintf(stdout, "wrote the endpoint and key into %s\n", writeConfig)
	}
	return exitOK
}

func runDestroy(args []string, stdout, stderr io.Writer) int {
	var (
		c   deploy.Config
		a   awsFlags
		yes bool
	)
	fs := commandFlags("fluidity destroy")
	a.add(fs)
	fs.StringVar(&c.Name, "name", deploy.DefaultName, "prefix the deployment was made with")
	fs.StringVar(&c.Bucket, "bucket", "", "S3 bucket the Lambda code went to, if deploy was given one")
	fs.BoolVarP(&yes, "yes", "y", false, "do not ask")
	if code, done := parseCommand(fs, args, destroyUsageHead, stdout, stderr); done {
		return code
	}
	c.Out = stdout
	ctx, stop := signalContext()
	defer stop()
	awsCfg, tr, err := a.load(ctx)
	defer tr.CloseIdleConnections()
	if err != nil {
		fmt.Fprintf(stderr, "fluidity destroy: %v\n", err)
		return exitError
	}
	d, err := deploy.New(awsCfg, c)
	if err != nil {
		return usageError(stderr, "fluidity destroy", err)
	}
	plan, err := d.DestroyPlan(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fluidity destroy: %v\n", err)
		return exitError
	}
	if len(plan) == 0 {
		fmt.Fprintf(stdout, "nothing of %q to remove in %s\n", c.Name, awsCfg.Region)
		return exitOK
	}
	fmt.Fprintf(stdout, "This removes, in %s:\n  %s\n", awsCfg.Region, strings.Join(plan, "\n  "))
	if !yes {
		fmt.Fprint(stdout, "Type yes to go on: ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			fmt.Fprintln(stdout, "nothing removed")
			return exitError
		}
	}
	if err := d.Destroy(ctx); err != nil {
		fmt.Fprintf(stderr, "fluidity destroy: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, "removed")
	return exitOK
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// findSourceDir returns the Fluidity checkout around the working directory,
// or "" when there is none.
func findSourceDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/fluidity-tunnel/fluidity\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
