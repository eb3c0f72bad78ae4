package ec2query

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
)

// answer is one canned HTTP answer.
type answer struct {
	status int
	body   string
}

// fakeEC2 is an httptest server that records each request and answers from
// a script, repeating the last answer once the script runs out.
type fakeEC2 struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	script  []answer
	bodies  []string
	headers []http.Header
}

func newFakeEC2(t *testing.T, script ...answer) *fakeEC2 {
	t.Helper()
	f := &fakeEC2{t: t, script: script}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		f.headers = append(f.headers, r.Header.Clone())
		a := f.script[0]
		if len(f.script) > 1 {
			f.script = f.script[1:]
		}
		f.mu.Unlock()
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEC2) requests() ([]string, []http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies...), append([]http.Header(nil), f.headers...)
}

// noBackoff retries at once, so the tests that count attempts take no time.
func noBackoff() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
	})
}

func (f *fakeEC2) client(mod ...func(*aws.Config)) *Client {
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String(f.srv.URL),
		HTTPClient:   f.srv.Client(),
		Retryer:      noBackoff,
	}
	for _, m := range mod {
		m(&cfg)
	}
	return New(cfg)
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCalls checks each typed call's form body against EC2's Query API
// reference and what it reads from a documented answer.
func TestCalls(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string // the answer
		call func(context.Context, *Client) (any, error)
		form string // the request body EC2 documents
		want any
	}{
		{
			name: "public IPs",
			body: testdata(t, "describe-network-interfaces.xml"),
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.PublicIPs(ctx, []string{"eni-0f62d866", "eni-a66ed5cf"})
			},
			form: "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1=eni-0f62d866&NetworkInterfaceId.2=eni-a66ed5cf&Version=2016-11-15",
			want: map[string]string{"eni-0f62d866": "203.0.113.12"},
		},
		{
			name: "default VPC",
			body: testdata(t, "describe-vpcs.xml"),
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.VPCIDs(ctx, Filter{Name: "isDefault", Values: []string{"true"}})
			},
			form: "Action=DescribeVpcs&Filter.1.Name=isDefault&Filter.1.Value.1=true&Version=2016-11-15",
			want: []string{"vpc-1a2b3c4d"},
		},
		{
			name: "public subnets",
			body: testdata(t, "describe-subnets.xml"),
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SubnetIDs(ctx,
					Filter{Name: "vpc-id", Values: []string{"vpc-1a2b3c4d"}},
					Filter{Name: "map-public-ip-on-launch", Values: []string{"true"}})
			},
			form: "Action=DescribeSubnets&Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1a2b3c4d&Filter.2.Name=map-public-ip-on-launch&Filter.2.Value.1=true&Version=2016-11-15",
			want: []string{"subnet-9d4a7b6c", "subnet-6e7f829e"},
		},
		{
			name: "several values",
			body: `<DescribeVpcsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><vpcSet/></DescribeVpcsResponse>`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.VPCIDs(ctx, Filter{Name: "tag:Name", Values: []string{"a b", "c&d"}})
			},
			form: "Action=DescribeVpcs&Filter.1.Name=tag%3AName&Filter.1.Value.1=a+b&Filter.1.Value.2=c%26d&Version=2016-11-15",
			want: []string(nil),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t, answer{200, tc.body})
			got, err := tc.call(t.Context(), f.client())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
			bodies, headers := f.requests()
			if len(bodies) != 1 || bodies[0] != tc.form {
				t.Errorf("request bodies %q, want [%q]", bodies, tc.form)
			}
			if ct := headers[0].Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestPublicIPsOfNoInterfacesCallsNothing(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t, answer{500, ""})
	ips, err := f.client().PublicIPs(t.Context(), nil)
	if err != nil || len(ips) != 0 {
		t.Fatalf("PublicIPs(nil) = %v, %v", ips, err)
	}
	if bodies, _ := f.requests(); len(bodies) != 0 {
		t.Errorf("made %d requests", len(bodies))
	}
}

// TestSignedForEC2: the request carries a SigV4 signature scoped to the
// region and service "ec2", over the body, with the session token.
func TestSignedForEC2(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t, answer{200, testdata(t, "describe-vpcs.xml")})
	c := f.client(func(cfg *aws.Config) {
		cfg.Region = "eu-west-3"
		cfg.Credentials = credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "session-token")
	})
	if _, err := c.VPCIDs(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, headers := f.requests()
	auth := headers[0].Get("Authorization")
	re := regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-3/ec2/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$`)
	m := re.FindStringSubmatch(auth)
	if m == nil {
		t.Fatalf("Authorization %q is not SigV4 for ec2 in eu-west-3", auth)
	}
	for _, h := range []string{"content-type", "host", "x-amz-date", "x-amz-security-token"} {
		if !strings.Contains(";"+m[1]+";", ";"+h+";") {
			t.Errorf("SignedHeaders %q lacks %s", m[1], h)
		}
	}
	if got := headers[0].Get("X-Amz-Security-Token"); got != "session-token" {
		t.Errorf("X-Amz-Security-Token %q", got)
	}
}

func TestAnonymousIsUnsigned(t *testing.T) {
	t.Parallel()
	f := newFakeEC2(t, answer{200, testdata(t, "describe-vpcs.xml")})
	c := f.client(func(cfg *aws.Config) { cfg.Credentials = aws.AnonymousCredentials{} })
	if _, err := c.VPCIDs(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, headers := f.requests(); headers[0].Get("Authorization") != "" {
		t.Errorf("anonymous request signed: %q", headers[0].Get("Authorization"))
	}
}

// TestErrors: EC2's error document becomes an *APIError that errors.As
// finds as a smithy.APIError too, inside a smithy.OperationError; the
// standard retryer retries throttling and 5xx, and nothing else.
func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		body      string
		code, msg string
		requestID string
		attempts  int // with RetryMaxAttempts 3
	}{
		{"not found", 400, testdata(t, "error-not-found.xml"), "InvalidNetworkInterfaceID.NotFound",
			"The networkInterface ID 'eni-0f62d866' does not exist", "ea966190-f9aa-478e-9ede-example", 1},
		{"throttled", 503, testdata(t, "error-throttled.xml"), "RequestLimitExceeded", "Request limit exceeded.",
			"5d8c6c55-3c3b-4a52-8d0c-example", 3},
		{"throttled as 400", 400, testdata(t, "error-throttled.xml"), "RequestLimitExceeded", "Request limit exceeded.",
			"5d8c6c55-3c3b-4a52-8d0c-example", 3},
		{"auth", 401, `<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>r1</RequestID></Response>`,
			"AuthFailure", "AWS was not able to validate the provided access credentials", "r1", 1},
		{"internal", 500, `<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred</Message></Error></Errors><RequestID>r2</RequestID></Response>`,
			"InternalError", "An internal error has occurred", "r2", 3},
		{"not xml, 502", 502, "<html>bad gateway</html>", "UnknownError", "Bad Gateway", "", 3},
		{"empty, 403", 403, "", "UnknownError", "Forbidden", "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t, answer{tc.status, tc.body})
			_, err := f.client(func(cfg *aws.Config) { cfg.RetryMaxAttempts = 3 }).VPCIDs(t.Context())
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T) holds no *APIError", err, err)
			}
			want := APIError{Code: tc.code, Message: tc.msg, RequestID: tc.requestID, StatusCode: tc.status}
			if *apiErr != want {
				t.Errorf("APIError %+v, want %+v", *apiErr, want)
			}
			var sErr smithy.APIError
			if !errors.As(err, &sErr) || sErr.ErrorCode() != tc.code || sErr.ErrorMessage() != tc.msg {
				t.Errorf("smithy.APIError %v", sErr)
			}
			var opErr *smithy.OperationError
			if !errors.As(err, &opErr) || opErr.Service() != "EC2" || opErr.Operation() != "DescribeVpcs" {
				t.Errorf("operation error %v", opErr)
			}
			if bodies, _ := f.requests(); len(bodies) != tc.attempts {
				t.Errorf("%d attempts, want %d", len(bodies), tc.attempts)
			}
			if tc.attempts > 1 {
				var maxErr *retry.MaxAttemptsError
				if !errors.As(err, &maxErr) {
					t.Errorf("retried error %v is no MaxAttemptsError", err)
				}
			}
		})
	}
}

func TestThrottlingRetriedThenSuccess(t *testing.T) {
	t.Parallel()
	throttled := answer{503, testdata(t, "error-throttled.xml")}
	f := newFakeEC2(t, throttled, throttled, answer{200, testdata(t, "describe-vpcs.xml")})
	ids, err := f.client().VPCIDs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, []string{"vpc-1a2b3c4d"}) {
		t.Errorf("ids %v", ids)
	}
	bodies, _ := f.requests()
	if len(bodies) != 3 || bodies[0] != bodies[2] {
		t.Errorf("requests %q: want the same request three times", bodies)
	}
}

// TestPagination: each page's nextToken is sent with the next request, and
// a token seen before ends the listing.
func TestPagination(t *testing.T) {
	t.Parallel()
	page := func(ids []string, next string) answer {
		var b strings.Builder
		b.WriteString(`<DescribeSubnetsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><subnetSet>`)
		for _, id := range ids {
			b.WriteString("<item><subnetId>" + id + "</subnetId></item>")
		}
		b.WriteString("</subnetSet>")
		if next != "" {
			b.WriteString("<nextToken>" + next + "</nextToken>")
		}
		b.WriteString("</DescribeSubnetsResponse>")
		return answer{200, b.String()}
	}
	tests := []struct {
		name   string
		script []answer
		want   []string
		tokens []string // NextToken of each request
	}{
		{"three pages", []answer{page([]string{"a", "b"}, "t1"), page([]string{"c"}, "t/2+"), page([]string{"d"}, "")},
			[]string{"a", "b", "c", "d"}, []string{"", "t1", "t/2+"}},
		{"repeated token", []answer{page([]string{"a"}, "t1"), page([]string{"b"}, "t1"), page([]string{"never"}, "")},
			[]string{"a", "b"}, []string{"", "t1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEC2(t, tc.script...)
			ids, err := f.client().SubnetIDs(t.Context(), Filter{Name: "vpc-id", Values: []string{"vpc-1"}})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Errorf("ids %v, want %v", ids, tc.want)
			}
			bodies, _ := f.requests()
			var tokens []string
			for _, b := range bodies {
				v, err := url.ParseQuery(b)
				if err != nil {
					t.Fatal(err)
				}
				if v.Get("Filter.1.Value.1") != "vpc-1" || v.Get("Action") != "DescribeSubnets" {
					t.Errorf("page request %q lost its parameters", b)
				}
				tokens = append(tokens, v.Get("NextToken"))
			}
			if !reflect.DeepEqual(tokens, tc.tokens) {
				t.Errorf("tokens %q, want %q", tokens, tc.tokens)
			}
		})
	}
}

// TestCanceledWhileWaiting: a call whose ctx ends while EC2 has not
// answered returns the context's error at once and is not retried.
func TestCanceledWhileWaiting(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices the client's hang-up only once it has read
		// the body.
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	c := New(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), HTTPClient: srv.Client(), Retryer: noBackoff})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	_, err := c.PublicIPs(ctx, []string{"eni-1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if n := len(arrived); n != 0 {
		t.Errorf("%d more attempts after the cancel", n)
	}
}

// roundTripFunc is an in-memory HTTP client, for tests on a fake clock
// (a real connection's read loop would keep synctest's clock from moving).
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// TestBackoffHonoursContext: with the SDK's standard retryer (jittered
// backoff up to 20 s), a deadline that ends during a backoff ends the call
// then, not after the wait.
func TestBackoffHonoursContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		hc := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			attempts++
			return &http.Response{StatusCode: 503, Body: io.NopCloser(strings.NewReader(testdata(t, "error-throttled.xml")))}, nil
		})
		c := New(aws.Config{Region: "us-east-1", HTTPClient: hc, RetryMaxAttempts: 1000})
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.VPCIDs(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the deadline", err)
		}
		if took := time.Since(start); took != 30*time.Second {
			t.Errorf("returned after %v, want at the 30 s deadline", took)
		}
		// Standard backoff: up to 2^n × 50 ms with full jitter, capped at
		// 20 s, so 30 s hold a handful of attempts, not hundreds.
		if attempts < 2 || attempts > 100 {
			t.Errorf("%d attempts in 30 s", attempts)
		}
	})
}

func TestNoRegion(t *testing.T) {
	t.Parallel()
	_, err := New(aws.Config{}).VPCIDs(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no region") {
		t.Fatalf("error %v", err)
	}
}

// endpointSources stands in for config.EnvConfig and config.SharedConfig.
type endpointSources struct {
	service string
	ignore  bool
}

func (s endpointSources) GetServiceBaseEndpoint(_ context.Context, id string) (string, bool, error) {
	return s.service, id == "EC2" && s.service != "", nil
}

func (s endpointSources) GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error) {
	return s.ignore, s.ignore, nil
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  aws.Config
		want string
	}{
		{"regional", aws.Config{Region: "us-east-1"}, "https://ec2.us-east-1.amazonaws.com"},
		{"china", aws.Config{Region: "cn-northwest-1"}, "https://ec2.cn-northwest-1.amazonaws.com.cn"},
		{"gov", aws.Config{Region: "us-gov-west-1"}, "https://ec2.us-gov-west-1.amazonaws.com"},
		{"iso", aws.Config{Region: "us-iso-east-1"}, "https://ec2.us-iso-east-1.c2s.ic.gov"},
		{"isob", aws.Config{Region: "us-isob-east-1"}, "https://ec2.us-isob-east-1.sc2s.sgov.gov"},
		{"no region", aws.Config{}, ""},
		{"not a region", aws.Config{Region: "evil.example/x"}, ""},
		{"base endpoint", aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:5000")}, "http://127.0.0.1:5000"},
		{"service endpoint wins", aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:5000"),
			ConfigSources: []any{endpointSources{service: "http://127.0.0.1:6000"}}}, "http://127.0.0.1:6000"},
		{"configured endpoints ignored", aws.Config{Region: "us-east-1",
			ConfigSources: []any{endpointSources{service: "http://127.0.0.1:6000", ignore: true}}}, "https://ec2.us-east-1.amazonaws.com"},
	}
	for _, tc := range tests {
		if got := resolveEndpoint(tc.cfg); got != tc.want {
			t.Errorf("%s: endpoint %q, want %q", tc.name, got, tc.want)
		}
	}
}
