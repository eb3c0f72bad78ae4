package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go/middleware"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// callLog records every AWS operation made through a configuration.
type callLog struct {
	mu  sync.Mutex
	ops []string
}

func (c *callLog) mark() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.ops) }

func (c *callLog) since(i int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ops[i:])
}

func (c *callLog) middleware(s *middleware.Stack) error {
	return s.Initialize.Add(middleware.InitializeMiddlewareFunc("fluidity-record-call",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.ops = append(c.ops, awsmiddleware.GetServiceID(ctx)+"."+awsmiddleware.GetOperationName(ctx))
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// recordEC2 records the EC2 calls, which internal/ec2query makes without
// the SDK's middleware: by the Action of each request signed for ec2.
type recordEC2 struct {
	log  *callLog
	next aws.HTTPClient
}

func (r recordEC2) Do(req *http.Request) (*http.Response, error) {
	if strings.Contains(req.Header.Get("Authorization"), "/ec2/aws4_request") && req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			if form, err := url.ParseQuery(string(b)); err == nil {
				r.log.mu.Lock()
				r.log.ops = append(r.log.ops, "EC2."+form.Get("Action"))
				r.log.mu.Unlock()
			}
		}
	}
	return r.next.Do(req)
}

// registryRoute sends every registry request, whatever host it names (the
// ECR URI moto hands out), to a local registry, and checks the ECR login.
type registryRoute struct {
	target *url.URL
	mu     sync.Mutex
	auth   []string
}

func (r *registryRoute) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if h := req.Header.Get("Authorization"); h != "" {
		r.mu.Lock()
		r.auth = append(r.auth, h)
		r.mu.Unlock()
	}
	req.URL.Scheme, req.URL.Host = r.target.Scheme, r.target.Host
	req.Host = r.target.Host
	return http.DefaultTransport.RoundTrip(req)
}

// writeCerts writes (or replaces) what `fluidity certs --dir dir` would.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	testbin.MintPKI(t, dir, testbin.PKIOptions{})
}

// writeLayout writes a small random image for linux/arch as an OCI layout.
func writeLayout(t *testing.T, arch string) (string, v1.Hash) {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return dir, h
}

// writeIndexLayout writes a two-platform index as `make images` does: one
// entry in index.json, named ref.
func writeIndexLayout(t *testing.T, ref string) (string, v1.Hash) {
	t.Helper()
	idx := v1.ImageIndex(empty.Index)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		t.Fatal(err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return dir, h
}

type flow struct {
	t      *testing.T
	ctx    context.Context
	awsCfg aws.Config
	calls  *callLog
	cf     *cloudformation.Client
}

func (f *flow) run(c Config) (Result, string, []string, error) {
	f.t.Helper()
	var out bytes.Buffer
	c.Out = &out
	d, err := New(f.awsCfg, c)
	if err != nil {
		f.t.Fatal(err)
	}
	mark := f.calls.mark()
	res, err := d.Deploy(f.ctx)
	f.t.Logf("deploy (dry run %v):\n%s", c.DryRun, out.String())
	return res, out.String(), f.calls.since(mark), err
}

func (f *flow) params(stack string) map[string]string {
	f.t.Helper()
	out, err := f.cf.DescribeStacks(f.ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
	if err != nil {
		f.t.Fatalf("describe %s: %v", stack, err)
	}
	return stackParams(&out.Stacks[0])
}

// mutating are the calls a dry run must never make.
var mutating = []string{
	"CloudFormation.CreateStack", "CloudFormation.ExecuteChangeSet",
	"Secrets Manager.CreateSecret", "Secrets Manager.PutSecretValue", "Secrets Manager.DeleteSecret",
	"ECR.CreateRepository", "ECR.DeleteRepository", "S3.CreateBucket", "S3.PutObject", "S3.PutBucketTagging",
	"S3.DeleteObjects", "S3.DeleteBucket", "IAM.CreateServiceLinkedRole",
}

func expectNone(t *testing.T, what string, ops []string, forbidden ...string) {
	t.Helper()
	for _, op := range ops {
		if slices.Contains(forbidden, op) {
			t.Errorf("%s called %s", what, op)
		}
	}
}

// TestDeployFlowOnMoto deploys the real templates to moto, deploys again
// (nothing changes), upgrades (a new image while the server is awake, new
// TLS material), previews a further upgrade and a fresh deployment with
// --dry-run, changes the metrics interval (both stacks follow), and destroys
// everything.
//
// What moto cannot show: it does not create AWS::ApiGateway::ApiKey, Stage,
// UsagePlan or UsagePlanKey from a template (so the stack has no ApiKeyId
// output: deploy's last step is checked on a key made directly), it does not
// carry a replaced task definition over to the service, and its change sets
// list no resource changes for an update that changes parameters only.
func TestDeployFlowOnMoto(t *testing.T) {
	t.Parallel()
	moto := awstest.StartMotoServer(t)
	// Generous: on a loaded machine the Lambda build alone can take minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	reg := httptest.NewServer(registry.New())
	t.Cleanup(reg.Close)
	target, _ := url.Parse(reg.URL)
	route := &registryRoute{target: target}

	calls := &callLog{}
	awsCfg := awstest.AWSConfig(moto.Endpoint)
	awsCfg.APIOptions = append(awsCfg.APIOptions, calls.middleware)
	awsCfg.HTTPClient = recordEC2{log: calls, next: awshttp.NewBuildableClient()}
	// The test's own look-ups are not deploy's calls.
	plain := awstest.AWSConfig(moto.Endpoint)

	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	arch := runtime.GOARCH // the Lambdas build from the cache the other tests fill
	certs := t.TempDir()
	writeCerts(t, certs)
	layout1, digest1 := writeLayout(t, arch)

	// The Lambdas are built once, by deploy's own builder (linking three
	// binaries is most of this test's time), and given as prebuilt zips.
	builder, err := New(awsCfg, Config{Arch: arch, SourceDir: root})
	if err != nil {
		t.Fatal(err)
	}
	zips, err := builder.lambdaZips(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lambdaDir := t.TempDir()
	for fn, b := range zips {
		if err := os.WriteFile(filepath.Join(lambdaDir, fn+".zip"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkBootstrapZip(t, zips["wake"])

	f := &flow{t: t, ctx: ctx, awsCfg: awsCfg, calls: calls, cf: cloudformation.NewFromConfig(plain)}
	base := Config{
		CertDir: certs, ImageLayout: layout1, ImageTag: "v1", Arch: arch, LambdaDir: lambdaDir,
		PollInterval: 20 * time.Millisecond, RegistryTransport: route, AllowedCidr: "203.0.113.0/24",
	}
	const (
		serverStack  = "fluidity-server"
		controlStack = "fluidity-control"
	)

	// 1. First deploy: everything is created.
	res, out, _, err := f.run(base)
	if !errors.Is(err, ErrNoAPIKey) { // moto: see above
		t.Fatalf("first deploy: %v, want only the moto gap %v", err, ErrNoAPIKey)
	}
	for _, want := range []string{"secret fluidity/server-tls: created", "ecr repository fluidity-server: created",
		"image: pushed", "stack fluidity-server: CREATE_COMPLETE", "stack fluidity-control: CREATE_COMPLETE",
		"lambda wake: uploaded", "bucket fluidity-artifacts-123456789012-us-east-1: created"} {
		if !strings.Contains(out, want) {
			t.Errorf("first deploy output lacks %q", want)
		}
	}
	if !strings.HasPrefix(res.APIEndpoint, "https://") || !strings.HasSuffix(res.APIEndpoint, "/prod") {
		t.Errorf("api endpoint %q", res.APIEndpoint)
	}
	repos, err := ecr.NewFromConfig(plain).DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"fluidity-server"}})
	if err != nil {
		t.Fatal(err)
	}
	repoURI := aws.ToString(repos.Repositories[0].RepositoryUri)
	sp := f.params(serverStack)
	if want := repoURI + "@" + digest1.String(); sp["Image"] != want || res.Image != want {
		t.Errorf("server stack Image = %q (result %q), want %q", sp["Image"], res.Image, want)
	}
	if sp["DesiredCount"] != "0" || sp["AllowedCidr"] != "203.0.113.0/24" || sp["CpuArchitecture"] != cpuArchitecture(arch) {
		t.Errorf("server stack parameters %v", sp)
	}
	// The image is in the registry under its tag, pushed with ECR's login.
	tagRef, _ := name.NewTag(repoURI + ":v1")
	desc, err := remote.Head(tagRef, remote.WithTransport(route))
	if err != nil || desc.Digest != digest1 {
		t.Errorf("pushed image: %v %v, want %s", desc, err, digest1)
	}
	if len(route.auth) == 0 || route.auth[0] != "Basic QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu" { // AWS:123456789012-auth-token
		t.Errorf("registry authorization %q, want ECR's token as Basic", route.auth)
	}
	// The control plane is wired to the server stack's outputs and to the uploaded code.
	cp := f.params(controlStack)
	s3c := s3.NewFromConfig(plain, func(o *s3.Options) { o.UsePathStyle = true })
	for _, fn := range lambdaNames {
		key := cp[strings.ToUpper(fn[:1])+fn[1:]+"CodeKey"]
		if _, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(cp["CodeBucket"]), Key: aws.String(key)}); err != nil {
			t.Errorf("lambda %s code s3://%s/%s: %v", fn, cp["CodeBucket"], key, err)
		}
	}
	if cp["ClusterName"] != "fluidity" || cp["ServiceName"] != "fluidity-server" || cp["LambdaArchitecture"] != lambdaArchitecture(arch) {
		t.Errorf("control stack parameters %v", cp)
	}
	checkMetricsInterval(t, "first deploy", sp, cp, "60s")
	sm := secretsmanager.NewFromConfig(plain)
	want, _ := readTLSSecret(certs)
	sec, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("fluidity/server-tls")})
	if err != nil || !sameJSON(aws.ToString(sec.SecretString), want) {
		t.Errorf("secret: %v", err)
	}
	if !strings.HasPrefix(sp["TlsSecretArn"], "arn:aws:secretsmanager:us-east-1:123456789012:secret:fluidity/server-tls-") {
		t.Errorf("TlsSecretArn %q", sp["TlsSecretArn"])
	}

	// The last step, on a key made directly (moto made none from the template).
	key, err := apigateway.NewFromConfig(plain).CreateApiKey(ctx, &apigateway.CreateApiKeyInput{Name: aws.String("fluidity-control-agent"), Enabled: true, Value: aws.String("k3y-from-api-gateway-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	d0, _ := New(awsCfg, base)
	if v, err := d0.apiKey(ctx, aws.ToString(key.Id)); err != nil || v != "k3y-from-api-gateway-0123456789" {
		t.Errorf("api key value %q, %v", v, err)
	}

	// 2. Second deploy: nothing changes.
	eventsBefore := f.eventCount(serverStack) + f.eventCount(controlStack)
	_, out, ops, err := f.run(base)
	if !errors.Is(err, ErrNoAPIKey) {
		t.Fatalf("second deploy: %v", err)
	}
	expectNone(t, "second deploy", ops, mutating...)
	for _, want := range []string{"secret fluidity/server-tls: unchanged", "is " + digest1.String() + " already",
		"stack fluidity-server: unchanged", "stack fluidity-control: unchanged", "there already"} {
		if !strings.Contains(out, want) {
			t.Errorf("second deploy output lacks %q", want)
		}
	}
	if n := f.eventCount(serverStack) + f.eventCount(controlStack); n != eventsBefore {
		t.Errorf("second deploy added stack events (%d -> %d)", eventsBefore, n)
	}

	// 3. Upgrade while the server is awake (as Wake leaves it), with new
	// TLS material: the new image by digest, the live count kept, and a warning.
	ecsc := ecs.NewFromConfig(plain)
	if _, err := ecsc.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("fluidity"), Service: aws.String("fluidity-server"), DesiredCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	writeCerts(t, certs)
	// A multi-platform index, tagged by the layout's own name for it.
	layout2, digest2 := writeIndexLayout(t, "fluidity-server:v2")
	up := base
	up.ImageLayout, up.ImageTag = layout2, ""
	_, out, ops, err = f.run(up)
	if !errors.Is(err, ErrNoAPIKey) {
		t.Fatalf("upgrade: %v", err)
	}
	sp = f.params(serverStack)
	if want := repoURI + "@" + digest2.String(); sp["Image"] != want {
		t.Errorf("after the upgrade Image = %q, want %q", sp["Image"], want)
	}
	if sp["DesiredCount"] != "1" {
		t.Errorf("after the upgrade of an awake server DesiredCount = %q, want the live 1", sp["DesiredCount"])
	}
	for _, want := range []string{"secret fluidity/server-tls: updated", "stack fluidity-server: UPDATE_COMPLETE",
		"WARNING: the server is awake", "parameter Image: " + repoURI + "@" + digest1.String() + " -> " + repoURI + "@" + digest2.String(),
		"parameter DesiredCount: 0 -> 1", "stack fluidity-control: unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("upgrade output lacks %q", want)
		}
	}
	if d, err := remote.Head(must(name.NewTag(repoURI+":v2")), remote.WithTransport(route)); err != nil || d.Digest != digest2 {
		t.Errorf("index pushed as :v2: %v %v", d, err)
	}
	if !slices.Contains(ops, "CloudFormation.ExecuteChangeSet") {
		t.Error("the upgrade executed no change set")
	}
	// (moto changes no task definition for a parameter change: the stack's
	// parameters are what can be checked.)
	svc, err := ecsc.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String("fluidity"), Services: []string{"fluidity-server"}})
	if err != nil || svc.Services[0].DesiredCount != 1 {
		t.Errorf("the upgrade changed the live desired count: %v", err)
	}

	// 4. Dry runs: a further upgrade, and a deployment under a new name.
	layout3, digest3 := writeLayout(t, arch)
	dry := base
	dry.ImageLayout, dry.ImageTag, dry.DryRun = layout3, "v3", true
	_, out, ops, err = f.run(dry)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	expectNone(t, "dry run", ops, mutating...)
	for _, want := range []string{"image: would push", "stack fluidity-server: would update",
		"parameter Image: " + repoURI + "@" + digest2.String() + " -> " + repoURI + "@" + digest3.String(),
		"this update would replace its task", "stack fluidity-control: unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if f.params(serverStack)["Image"] != repoURI+"@"+digest2.String() {
		t.Error("the dry run changed the server stack")
	}
	if _, err := remote.Head(must(name.NewTag(repoURI+":v3")), remote.WithTransport(route)); err == nil {
		t.Error("the dry run pushed the image")
	}
	fresh := dry
	fresh.Name = "fresh"
	_, out, ops, err = f.run(fresh)
	if err != nil {
		t.Fatalf("dry run of a new deployment: %v", err)
	}
	expectNone(t, "dry run of a new deployment", ops, mutating...)
	for _, want := range []string{"secret fresh/server-tls: would create", "ecr repository fresh-server: would create",
		"stack fresh-server: would create", "Add    TaskDefinition", "stack fresh-control: would create", "Add    WakeFunction",
		"bucket fresh-artifacts-123456789012-us-east-1: would create"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output of a new deployment lacks %q", want)
		}
	}
	for _, s := range []string{"fresh-server", "fresh-control"} {
		if st, err := d0.describeStack(ctx, s); err != nil || st != nil {
			t.Errorf("the dry run left stack %s behind: %v %v", s, st, err)
		}
	}

	// 5. A new metrics interval reaches both stacks: the server publishes at
	// it and the Kill Lambda reads its window from it. (Last before destroy:
	// moto keeps a stack's parameters from before an executed change set, so
	// an identical run after this one would not read as unchanged.)
	up.MetricsInterval = 90 * time.Second
	_, out, _, err = f.run(up)
	if !errors.Is(err, ErrNoAPIKey) {
		t.Fatalf("metrics interval change: %v", err)
	}
	checkMetricsInterval(t, "after the change", f.params(serverStack), f.params(controlStack), "90s")
	if n := strings.Count(out, "parameter MetricsInterval: 60s -> 90s"); n != 2 {
		t.Errorf("the metrics interval change listed %d stacks' parameter change, want 2", n)
	}
	for _, want := range []string{"stack fluidity-server: UPDATE_COMPLETE", "stack fluidity-control: UPDATE_COMPLETE"} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics interval change output lacks %q", want)
		}
	}

	// 6. Destroy leaves nothing.
	var dout bytes.Buffer
	dc := Config{Out: &dout, PollInterval: 20 * time.Millisecond}
	d, err := New(awsCfg, dc)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := d.DestroyPlan(ctx)
	if err != nil || len(plan) != 6 {
		t.Errorf("destroy plan %q, %v; want stacks ×2, secret, repository, objects, bucket", plan, err)
	}
	if err := d.Destroy(ctx); err != nil {
		t.Fatalf("destroy: %v\n%s", err, dout.String())
	}
	t.Logf("destroy:\n%s", dout.String())
	if plan, err := d.DestroyPlan(ctx); err != nil || len(plan) != 0 {
		t.Errorf("after destroy: %q, %v", plan, err)
	}
	stacks, err := f.cf.ListStacks(ctx, &cloudformation.ListStacksInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stacks.StackSummaries {
		if s.StackStatus != "DELETE_COMPLETE" {
			t.Errorf("stack %s left in %s", aws.ToString(s.StackName), s.StackStatus)
		}
	}
	if _, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("fluidity/server-tls")}); apiErrorCode(err) != "ResourceNotFoundException" {
		t.Errorf("secret after destroy: %v", err)
	}
	if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cp["CodeBucket"])}); !isNotFound(err) {
		t.Errorf("bucket after destroy: %v", err)
	}
	if _, err := ecr.NewFromConfig(plain).DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{"fluidity-server"}}); apiErrorCode(err) != "RepositoryNotFoundException" {
		t.Errorf("repository after destroy: %v", err)
	}
	// (moto's stack deletion leaves the ECS cluster, which still has the
	// service when it tries; CloudFormation deletes the service first.)

	// Every AWS call made is one the permissions list (and so the policy) has.
	calledAll := calls.since(0)
	for _, op := range calledAll {
		if _, ok := Calls[op]; !ok {
			t.Errorf("deploy called %s, which Calls (and infra/deployer-policy.json) lacks", op)
		}
	}
	for op := range Calls {
		if !slices.Contains(calledAll, op) {
			t.Errorf("Calls lists %s, which the flow never made: drop it or cover it", op)
		}
	}
}

// checkMetricsInterval: the server stack and the control-plane stack (the
// Kill Lambda's window) were given the same interval, want.
func checkMetricsInterval(t *testing.T, when string, server, control map[string]string, want string) {
	t.Helper()
	if server["MetricsInterval"] != want || control["MetricsInterval"] != want {
		t.Errorf("%s: MetricsInterval %q (server stack), %q (control-plane stack), want %q in both",
			when, server["MetricsInterval"], control["MetricsInterval"], want)
	}
}

func (f *flow) eventCount(stack string) int {
	f.t.Helper()
	out, err := f.cf.DescribeStackEvents(f.ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack)})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(out.StackEvents)
}

// checkBootstrapZip: one executable file named bootstrap, time-stamped
// so that the same binary always makes the same zip.
func checkBootstrapZip(t *testing.T, b []byte) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" || zr.File[0].Mode()&0o111 == 0 {
		t.Fatalf("lambda zip: %+v", zr.File)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	bin, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := bootstrapZip(bin)
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("the same binary zips to different bytes")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
