// Package ec2query is a small client for the EC2 Query API, for the few
// calls Fluidity makes: a task's public IP (the Wake Lambda), the default
// VPC and its public subnets (`fluidity deploy`), and, through [Client.Do],
// the fixtures the moto tests create.
//
// It exists because the SDK's generated EC2 client (hundreds of operations)
// cost about 120 CPU-seconds to compile on an empty build cache, more than
// the whole standard library, for every build configuration and every
// binary that linked it, and made those binaries megabytes larger. This
// package is built only from parts every other SDK client already compiles:
// [aws.Config] (credentials, region, endpoint, HTTP client, retryer), the
// SigV4 signer and encoding/xml.
package ec2query

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

const (
	// APIVersion is the EC2 API version every request names; it is the one
	// the SDK's client speaks, and the response shapes below are from it.
	APIVersion = "2016-11-15"
	// ServiceID is the SDK's service ID for EC2: the ServiceID of the
	// [smithy.OperationError] every failed call returns, and the key of
	// a service-specific endpoint (AWS_ENDPOINT_URL_EC2).
	ServiceID = "EC2"

	signingName = "ec2"
	// maxBody bounds a response read into memory. Our Describe calls are
	// filtered to a handful of items; a body this large is not EC2's.
	maxBody = 8 << 20
)

// Client calls the EC2 Query API. It is safe for concurrent use.
type Client struct {
	region   string
	endpoint string
	creds    aws.CredentialsProvider // nil: requests go unsigned
	http     aws.HTTPClient
	retryer  aws.RetryerV2
	signer   *v4.Signer
}

// New returns a Client for cfg (usually from config.LoadDefaultConfig): its
// Region, Credentials, HTTPClient and retry settings (Retryer, RetryMode,
// RetryMaxAttempts), and the endpoint the SDK's client would use:
// a service-specific one from cfg.ConfigSources (AWS_ENDPOINT_URL_EC2,
// a profile's services section), else cfg.BaseEndpoint (AWS_ENDPOINT_URL),
// else the regional endpoint. cfg.APIOptions do not apply: they are
// middleware for the SDK's generated clients.
func New(cfg aws.Config) *Client {
	c := &Client{
		region:   cfg.Region,
		endpoint: resolveEndpoint(cfg),
		creds:    cfg.Credentials,
		http:     cfg.HTTPClient,
		retryer:  newRetryer(cfg),
		signer:   v4.NewSigner(),
	}
	if c.http == nil {
		c.http = awshttp.NewBuildableClient()
	}
	switch {
	case c.creds == nil, aws.IsCredentialsProvider(c.creds, aws.AnonymousCredentials{}):
		c.creds = nil
	case !aws.IsCredentialsProvider(c.creds, (*aws.CredentialsCache)(nil)):
		// As the SDK's clients do: a provider that fetches (SSO, a role)
		// is asked once per expiry, not once per request.
		c.creds = aws.NewCredentialsCache(c.creds)
	}
	return c
}

// Do calls action with params (every parameter but Action and Version,
// in EC2's Query form: "Filter.1.Name", "Filter.1.Value.1", ...) and
// decodes the response's XML into out, unless out is nil. It makes one
// call (retried as cfg's retryer says), not one per page.
//
// An error is a *[smithy.OperationError]; when EC2 answered with one, it
// wraps an *[APIError].
func (c *Client) Do(ctx context.Context, action string, params url.Values, out any) error {
	if err := c.do(ctx, action, params, out); err != nil {
		return &smithy.OperationError{ServiceID: ServiceID, OperationName: action, Err: err}
	}
	return nil
}

func (c *Client) do(ctx context.Context, action string, params url.Values, out any) error {
	if c.region == "" {
		return errors.New("no region: set AWS_REGION or a profile's region")
	}
	if c.endpoint == "" {
		return fmt.Errorf("no endpoint for region %q", c.region)
	}
	body := formBody(action, params)
	return c.withRetries(ctx, func(ctx context.Context) error {
		b, err := c.send(ctx, body)
		if err != nil || out == nil {
			return err
		}
		if err := xml.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s response: %w", action, err)
		}
		return nil
	})
}

// formBody is the request body: params with Action and Version, in the
// order url.Values encodes (sorted by key), which is what EC2 documents.
func formBody(action string, params url.Values) string {
	v := make(url.Values, len(params)+2)
	for k, vs := range params {
		v[k] = vs
	}
	v.Set("Action", action)
	v.Set("Version", APIVersion)
	return v.Encode()
}

// send makes one attempt and returns the body of a 2xx answer. Its errors
// are the SDK's kinds, so that the SDK's retryers classify them: a
// *smithy.CanceledError when ctx ended, a *smithyhttp.RequestSendError for
// transport trouble, an *APIError for EC2's answers.
func (c *Client) send(ctx context.Context, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	req.Header.Set("User-Agent", "fluidity-ec2query")
	if c.creds != nil {
		creds, err := c.creds.Retrieve(ctx)
		if err != nil {
			return nil, fmt.Errorf("retrieve credentials: %w", err)
		}
		sum := sha256.Sum256([]byte(body))
		if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), signingName, c.region, time.Now()); err != nil {
			return nil, fmt.Errorf("sign request: %w", err)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &smithy.CanceledError{Err: ctx.Err()}
		}
		return nil, &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody+1)); err != nil {
		if ctx.Err() != nil {
			return nil, &smithy.CanceledError{Err: ctx.Err()}
		}
		return nil, &smithyhttp.RequestSendError{Err: fmt.Errorf("read response: %w", err)}
	}
	if buf.Len() > maxBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeError(resp.StatusCode, buf.Bytes())
	}
	return buf.Bytes(), nil
}

// serviceEndpointSource is what the SDK's configuration sources
// (config.EnvConfig, config.SharedConfig) implement for service-specific
// endpoints; the SDK's own interface for it is internal.
type serviceEndpointSource interface {
	GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
}

type ignoreEndpointsSource interface {
	GetIgnoreConfiguredEndpoints(ctx context.Context) (bool, bool, error)
}

// regionPattern keeps a region name a DNS label; the SDK refuses others too.
var regionPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

func resolveEndpoint(cfg aws.Config) string {
	ignore := false
	for _, src := range cfg.ConfigSources {
		if s, ok := src.(ignoreEndpointsSource); ok {
			if v, found, err := s.GetIgnoreConfiguredEndpoints(context.Background()); err == nil && found {
				ignore = v
				break
			}
		}
	}
	if !ignore {
		for _, src := range cfg.ConfigSources {
			if s, ok := src.(serviceEndpointSource); ok {
				if v, found, err := s.GetServiceBaseEndpoint(context.Background(), ServiceID); err == nil && found && v != "" {
					return v
				}
			}
		}
	}
	if cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != "" {
		return *cfg.BaseEndpoint
	}
	return RegionalEndpoint(cfg.Region)
}

// RegionalEndpoint is EC2's public endpoint in region, or "" for a name that
// is no region. The partitions differ in their DNS suffix.
func RegionalEndpoint(region string) string {
	if !regionPattern.MatchString(region) {
		return ""
	}
	suffix := "amazonaws.com"
	switch {
	case strings.HasPrefix(region, "cn-"):
		suffix = "amazonaws.com.cn"
	case strings.HasPrefix(region, "us-isob-"):
		suffix = "sc2s.sgov.gov"
	case strings.HasPrefix(region, "us-iso-"):
		suffix = "c2s.ic.gov"
	}
	return "https://ec2." + region + "." + suffix
}
