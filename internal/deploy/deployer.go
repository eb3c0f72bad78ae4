package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/fluidity-tunnel/fluidity/infra"
	"github.com/fluidity-tunnel/fluidity/internal/ec2query"
)

// Deployer runs deploys and destroys with one set of AWS credentials.
type Deployer struct {
	cfg    Config
	n      names
	region string
	out    io.Writer

	cf    *cloudformation.Client
	ecr   *ecr.Client
	ecs   *ecs.Client
	ec2   *ec2query.Client
	iam   *iam.Client
	s3    *s3.Client
	sm    *secretsmanager.Client
	apigw *apigateway.Client
	sts   *sts.Client

	// Template bodies; the embedded ones unless a test swaps them.
	fargateTemplate, controlTemplate string
}

// New returns a Deployer for awsCfg (e.g. from config.LoadDefaultConfig:
// environment, profile, SSO; AWS_ENDPOINT_URL points it elsewhere) and cfg.
func New(awsCfg aws.Config, cfg Config) (*Deployer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("%w: no AWS region (set AWS_REGION or a profile's region)", ErrInvalid)
	}
	cfg = cfg.withDefaults()
	// S3 in path style: bucket names with dots, and local endpoints, work.
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = awsCfg.BaseEndpoint != nil })
	return &Deployer{
		cfg: cfg, n: namesFor(cfg.Name), region: awsCfg.Region, out: cfg.Out,
		cf:    cloudformation.NewFromConfig(awsCfg),
		ecr:   ecr.NewFromConfig(awsCfg),
		ecs:   ecs.NewFromConfig(awsCfg),
		ec2:   ec2query.New(awsCfg),
		iam:   iam.NewFromConfig(awsCfg),
		s3:    s3c,
		sm:    secretsmanager.NewFromConfig(awsCfg),
		apigw: apigateway.NewFromConfig(awsCfg),
		sts:   sts.NewFromConfig(awsCfg),

		fargateTemplate: infra.FargateTemplate,
		controlTemplate: infra.ControlPlaneTemplate,
	}, nil
}

func (d *Deployer) say(format string, a ...any) {
	fmt.Fprintf(d.out, format+"\n", a...)
}

// would prefixes dry-run reports.
func (d *Deployer) would(done, planned string) string {
	if d.cfg.DryRun {
		return "would " + planned
	}
	return done
}

func (d *Deployer) account(ctx context.Context) (string, error) {
	out, err := d.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("who am I (sts get-caller-identity): %w", err)
	}
	return aws.ToString(out.Account), nil
}

func (d *Deployer) bucketName(account string) string {
	if d.cfg.Bucket != "" {
		return d.cfg.Bucket
	}
	return fmt.Sprintf("%s-artifacts-%s-%s", d.cfg.Name, account, d.region)
}

// apiErrorCode returns the service's error code, or "".
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func apiErrorIs(err error, code string, msgContains ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		return false
	}
	for _, m := range msgContains {
		if !strings.Contains(ae.ErrorMessage(), m) {
			return false
		}
	}
	return true
}

// Deploy creates or updates everything and returns what the agent needs.
// With DryRun it only reports; the Result then holds what is known already.
func (d *Deployer) Deploy(ctx context.Context) (Result, error) {
	var res Result
	account, err := d.account(ctx)
	if err != nil {
		return res, err
	}
	d.say("deploying %q to account %s, region %s%s", d.cfg.Name, account, d.region, map[bool]string{true: " (dry run: nothing is changed)"}[d.cfg.DryRun])

	secretARN, err := d.ensureSecret(ctx, account)
	if err != nil {
		return res, err
	}
	image, err := d.ensureImage(ctx)
	if err != nil {
		return res, err
	}
	res.Image = image
	net, err := d.network(ctx)
	if err != nil {
		return res, err
	}
	if err := d.ensureECSServiceLinkedRole(ctx); err != nil {
		return res, err
	}
	server, err := d.applyStack(ctx, d.serverStack(image, secretARN, net))
	if err != nil {
		return res, err
	}

	bucket := d.bucketName(account)
	keys, err := d.ensureLambdaCode(ctx, bucket)
	if err != nil {
		return res, err
	}
	control, err := d.applyStack(ctx, d.controlStack(bucket, keys, server))
	if err != nil {
		return res, err
	}
	if d.cfg.DryRun {
		res.APIEndpoint = control["ApiUrl"]
		return res, nil
	}
	res.APIEndpoint = control["ApiUrl"]
	res.APIKeyID = control["ApiKeyId"]
	if res.APIKeyID == "" {
		return res, fmt.Errorf("%w (stack %s)", ErrNoAPIKey, d.n.controlStack)
	}
	if res.APIKey, err = d.apiKey(ctx, res.APIKeyID); err != nil {
		return res, err
	}
	return res, nil
}

// apiKey reads the key's value (the one secret API Gateway keeps).
func (d *Deployer) apiKey(ctx context.Context, id string) (string, error) {
	out, err := d.apigw.GetApiKey(ctx, &apigateway.GetApiKeyInput{ApiKey: aws.String(id), IncludeValue: aws.Bool(true)})
	if err != nil {
		return "", fmt.Errorf("api key %s: %w", id, err)
	}
	if aws.ToString(out.Value) == "" {
		return "", fmt.Errorf("api key %s: API Gateway returned no value", id)
	}
	return aws.ToString(out.Value), nil
}
