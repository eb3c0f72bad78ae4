package infra_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"go.yaml.in/yaml/v3"

	"github.com/fluidity-tunnel/fluidity/infra"
	"github.com/fluidity-tunnel/fluidity/internal/awstest"
)

var templates = []string{"fargate.yaml", "control-plane.yaml"}

// Every template in infra/, not just the known ones, must lint clean.
func TestCfnLint(t *testing.T) {
	t.Parallel()
	bin := awstest.LookTool(t, "cfn-lint")
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range templates {
		if !slices.Contains(files, want) {
			t.Fatalf("%s missing from %v", want, files)
		}
	}
	cmd := exec.Command(bin, append([]string{"--"}, files...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cfn-lint %v: %v\n%s", files, err, out)
	}
}

// templateResources returns logical ID → resource type from a template,
// reading YAML nodes so CloudFormation's short-form tags need no handling.
func templateResources(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	res := map[string]string{}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "Resources" {
			continue
		}
		rs := root.Content[i+1]
		for j := 0; j+1 < len(rs.Content); j += 2 {
			body := rs.Content[j+1]
			for k := 0; k+1 < len(body.Content); k += 2 {
				if body.Content[k].Value == "Type" {
					res[rs.Content[j].Value] = body.Content[k+1].Value
				}
			}
		}
	}
	return res
}

// The resources each stack must have, by logical ID. "Name*" is one ID that
// starts with Name (the Deployment's ends in the API's hash).
var wantResources = map[string]map[string]string{
	"fargate.yaml": {
		"Cluster":        "AWS::ECS::Cluster",
		"Service":        "AWS::ECS::Service",
		"TaskDefinition": "AWS::ECS::TaskDefinition",
		"ExecutionRole":  "AWS::IAM::Role",
		"TaskRole":       "AWS::IAM::Role",
		"LogGroup":       "AWS::Logs::LogGroup",
		"SecurityGroup":  "AWS::EC2::SecurityGroup",
	},
	"control-plane.yaml": {
		"WakeFunction": "AWS::Lambda::Function", "SleepFunction": "AWS::Lambda::Function", "KillFunction": "AWS::Lambda::Function",
		"WakeRole": "AWS::IAM::Role", "SleepRole": "AWS::IAM::Role", "KillRole": "AWS::IAM::Role",
		"WakeLogGroup": "AWS::Logs::LogGroup", "SleepLogGroup": "AWS::Logs::LogGroup", "KillLogGroup": "AWS::Logs::LogGroup",
		"Api": "AWS::ApiGateway::RestApi", "WakeResource": "AWS::ApiGateway::Resource", "KillResource": "AWS::ApiGateway::Resource",
		"WakeMethod": "AWS::ApiGateway::Method", "KillMethod": "AWS::ApiGateway::Method",
		"ApiDeployment*": "AWS::ApiGateway::Deployment", "Stage": "AWS::ApiGateway::Stage",
		"ApiKey": "AWS::ApiGateway::ApiKey", "UsagePlan": "AWS::ApiGateway::UsagePlan", "UsagePlanKey": "AWS::ApiGateway::UsagePlanKey",
		"WakeApiPermission": "AWS::Lambda::Permission", "KillApiPermission": "AWS::Lambda::Permission",
		"SleepRule": "AWS::Events::Rule", "NightlyKillRule": "AWS::Events::Rule",
		"SleepSchedulePermission": "AWS::Lambda::Permission", "KillSchedulePermission": "AWS::Lambda::Permission",
	},
}

// moto skips these types silently, so they are checked in the template only.
var motoUnsupported = map[string]bool{
	"AWS::ApiGateway::Stage":        true,
	"AWS::ApiGateway::ApiKey":       true,
	"AWS::ApiGateway::UsagePlan":    true,
	"AWS::ApiGateway::UsagePlanKey": true,
}

func TestTemplatesDeclareEverything(t *testing.T) {
	t.Parallel()
	for _, name := range templates {
		got := templateResources(t, name)
		for id, typ := range wantResources[name] {
			id = resolveID(t, id, got)
			if got[id] != typ {
				t.Errorf("%s: resource %s is %q, want %s", name, id, got[id], typ)
			}
		}
	}
}

// Properties the design depends on, checked in the template text where moto
// cannot show them.
func TestTemplateDetails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string
	}{
		{"fargate.yaml", []string{
			"DesiredCount: !Ref DesiredCount", `Cpu: "256"`, `Memory: "512"`, "NetworkMode: awsvpc", "AssignPublicIp: ENABLED",
			"CidrIp: !Ref AllowedCidr", "cloudwatch:namespace: Fluidity", "HealthCheck:", "awslogs-group: !Ref LogGroup",
		}},
		{"control-plane.yaml", []string{
			"ApiKeyRequired: true", "HttpMethod: POST", "PathPart: wake", "PathPart: kill",
			"Default: rate(5 minutes)", "Default: cron(0 23 * * ? *)", "KeyType: API_KEY",
			"service/${ClusterName}/${ServiceName}", "ApiUrl:", "ApiKeyId:",
		}},
	}
	for _, tc := range tests {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", tc.file, w)
			}
		}
	}
}

func TestStacksDeployToMoto(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	cfg := awstest.AWSConfig(endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// A public subnet for the Fargate stack's parameters.
	vpc, subnet := awstest.SeedNetwork(t, endpoint, "10.9.0.0/16", "10.9.1.0/24")
	// The Lambda code the control-plane stack points at.
	putS3(t, endpoint, "fluidity-artifacts", "", nil)
	for _, fn := range []string{"wake", "sleep", "kill"} {
		putS3(t, endpoint, "fluidity-artifacts", "fluidity/"+fn+".zip", bootstrapZip(t))
	}

	// The one TLS secret, made as the walk-through makes it.
	tls := awstest.TLSSecret{CertPEM: "-----BEGIN CERTIFICATE-----\nserver\n-----END CERTIFICATE-----\n",
		KeyPEM: "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n", CACertPEM: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"}
	secretARN := awstest.SeedTLSSecret(t, endpoint, "fluidity/server-tls", tls)
	stacks := []struct {
		file   string
		params map[string]string
	}{
		{"fargate.yaml", map[string]string{
			"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fluidity-server:test",
			"VpcId": vpc, "SubnetIds": subnet,
			"AllowedCidr": "203.0.113.0/24", "TlsSecretArn": secretARN,
		}},
		{"control-plane.yaml", map[string]string{"CodeBucket": "fluidity-artifacts"}},
	}
	cf := cloudformation.NewFromConfig(cfg)
	for _, s := range stacks {
		body, err := os.ReadFile(s.file)
		if err != nil {
			t.Fatal(err)
		}
		name := "fluidity-" + strings.TrimSuffix(s.file, ".yaml")
		var params []cftypes.Parameter
		for k, v := range s.params {
			params = append(params, cftypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
		}
		if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{
			StackName: aws.String(name), TemplateBody: aws.String(string(body)), Parameters: params,
			Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam},
		}); err != nil {
			t.Fatalf("create stack %s: %v", name, err)
		}
		waitComplete(ctx, t, cf, name)

		out, err := cf.ListStackResources(ctx, &cloudformation.ListStackResourcesInput{StackName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		deployed := map[string]cftypes.StackResourceSummary{}
		for _, r := range out.StackResourceSummaries {
			deployed[aws.ToString(r.LogicalResourceId)] = r
		}
		var ids []string
		for id := range wantResources[s.file] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			typ := wantResources[s.file][id]
			if motoUnsupported[typ] {
				continue // asserted from the template in TestTemplatesDeclareEverything
			}
			r, ok := deployed[resolveID(t, id, deployed)]
			if !ok {
				t.Errorf("%s: resource %s (%s) was not created", name, id, typ)
				continue
			}
			// moto leaves some physical IDs empty (methods, permissions), so
			// the type and status are checked here and the real objects below.
			if aws.ToString(r.ResourceType) != typ || r.ResourceStatus != cftypes.ResourceStatusCreateComplete {
				t.Errorf("%s: %s = %s %s, want %s CREATE_COMPLETE", name, id, aws.ToString(r.ResourceType), r.ResourceStatus, typ)
			}
		}
	}

	// The Fargate service exists as the Lambdas will address it, asleep.
	svc, err := ecs.NewFromConfig(cfg).DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster: aws.String("fluidity"), Services: []string{"fluidity-server"},
	})
	if err != nil || len(svc.Services) != 1 {
		t.Fatalf("describe fluidity/fluidity-server: %v %+v", err, svc)
	}
	if got := svc.Services[0].DesiredCount; got != 0 {
		t.Errorf("service desired count = %d, want 0", got)
	}
	checkTLSSecretInjection(t, endpoint, aws.ToString(svc.Services[0].TaskDefinition), secretARN, tls)

	// The functions, the API and the schedules exist as the services see
	// them (raw calls: the module has no Lambda, API Gateway or Events client).
	var fns struct {
		Functions []struct {
			FunctionName string
			Runtime      string
			Handler      string
			// any: moto keeps Number parameters as JSON numbers here.
			Environment struct{ Variables map[string]any }
		}
	}
	motoCall(t, endpoint, "lambda", http.MethodGet, "/2015-03-31/functions/", "", nil, &fns)
	gotFns := map[string]bool{}
	for _, f := range fns.Functions {
		gotFns[f.FunctionName] = true
		if f.Runtime != "provided.al2023" || f.Handler != "bootstrap" || fmt.Sprint(f.Environment.Variables["SERVICE_NAME"]) != "fluidity-server" {
			t.Errorf("function %s: runtime %q handler %q env %v", f.FunctionName, f.Runtime, f.Handler, f.Environment.Variables)
		}
	}
	for _, fn := range []string{"wake", "sleep", "kill"} {
		if !gotFns["fluidity-control-plane-"+fn] {
			t.Errorf("function fluidity-control-plane-%s missing (have %v)", fn, gotFns)
		}
	}

	var apis struct {
		Item []struct{ ID string }
	}
	motoCall(t, endpoint, "apigateway", http.MethodGet, "/restapis", "", nil, &apis)
	if len(apis.Item) != 1 {
		t.Fatalf("rest apis: %+v, want one", apis)
	}
	var resources struct {
		Item []struct {
			ID, Path        string
			ResourceMethods map[string]any
		}
	}
	motoCall(t, endpoint, "apigateway", http.MethodGet, "/restapis/"+apis.Item[0].ID+"/resources", "", nil, &resources)
	paths := map[string]string{}
	for _, r := range resources.Item {
		if _, ok := r.ResourceMethods["POST"]; ok {
			paths[r.Path] = r.ID
		}
	}
	for _, p := range []string{"/wake", "/kill"} {
		id, ok := paths[p]
		if !ok {
			t.Errorf("no POST %s in the API (have %v)", p, paths)
			continue
		}
		var m struct{ ApiKeyRequired bool }
		motoCall(t, endpoint, "apigateway", http.MethodGet, "/restapis/"+apis.Item[0].ID+"/resources/"+id+"/methods/POST", "", nil, &m)
		if !m.ApiKeyRequired {
			t.Errorf("POST %s does not require an API key", p)
		}
	}

	var rules struct {
		Rules []struct{ Name, ScheduleExpression string }
	}
	motoCall(t, endpoint, "events", http.MethodPost, "/", "AWSEvents.ListRules", []byte("{}"), &rules)
	schedules := map[string]bool{}
	for _, r := range rules.Rules {
		schedules[r.ScheduleExpression] = true
	}
	for _, s := range []string{"rate(5 minutes)", "cron(0 23 * * ? *)"} {
		if !schedules[s] {
			t.Errorf("no EventBridge rule with %s (have %v)", s, schedules)
		}
	}
}

// motoCall makes one raw AWS API call to moto, which routes by the service
// named in the credential scope and does not check signatures.
func motoCall(t *testing.T, endpoint, service, method, path, target string, body []byte, out any) {
	t.Helper()
	req, err := http.NewRequest(method, endpoint+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	date := time.Now().UTC().Format("20060102")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+awstest.AccessKeyID+"/"+date+"/"+awstest.Region+
		"/"+service+"/aws4_request, SignedHeaders=host, Signature=0")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", service, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s %s: %s\n%s", service, method, path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s %s: decode %s: %v", service, method, path, b, err)
	}
}

func waitComplete(ctx context.Context, t *testing.T, cf *cloudformation.Client, name string) {
	t.Helper()
	for {
		out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
		if err != nil {
			t.Fatalf("describe stack %s: %v", name, err)
		}
		st := out.Stacks[0]
		switch st.StackStatus {
		case cftypes.StackStatusCreateComplete, cftypes.StackStatusUpdateComplete:
			return
		case cftypes.StackStatusCreateInProgress, cftypes.StackStatusUpdateInProgress, cftypes.StackStatusUpdateCompleteCleanupInProgress:
		default:
			events, _ := cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
			var lines []string
			if events != nil {
				for _, e := range events.StackEvents {
					lines = append(lines, fmt.Sprintf("%s %s %s", aws.ToString(e.LogicalResourceId), e.ResourceStatus, aws.ToString(e.ResourceStatusReason)))
				}
			}
			t.Fatalf("stack %s: %s (%s)\n%s", name, st.StackStatus, aws.ToString(st.StackStatusReason), strings.Join(lines, "\n"))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stack %s not complete: %v", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// putS3 creates a bucket (key "") or an object in moto's S3. The module has
// no S3 client, and moto needs none: it accepts path-style requests with any
// credentials, identified by the scope in the Authorization header.
func putS3(t *testing.T, endpoint, bucket, key string, body []byte) {
	t.Helper()
	u := endpoint + "/" + bucket
	if key != "" {
		u += "/" + key
	}
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	date := time.Now().UTC().Format("20060102")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+awstest.AccessKeyID+"/"+date+"/"+awstest.Region+
		"/s3/aws4_request, SignedHeaders=host, Signature=0")
	req.Header.Set("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("s3 put %s: %v", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("s3 put %s: %s", u, resp.Status)
	}
}

// bootstrapZip is a Lambda package in the deployed layout (one executable
// named bootstrap). Its content is never run by moto.
func bootstrapZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("#!/bin/sh\nexit 0\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkTLSSecretInjection checks the deployed task definition against the
// secret: each container secret is one JSON key of the one secret
// ("<ARN>:<key>::"), named FLUIDITY_SERVER_<KEY> (the server's environment
// interface), and the secret holds exactly those keys, with their values.
func checkTLSSecretInjection(t *testing.T, endpoint, taskDef, secretARN string, want awstest.TLSSecret) {
	t.Helper()
	// A raw call: moto answers Number parameters substituted into the
	// container's environment as JSON numbers, which the SDK rejects.
	var td struct {
		TaskDefinition struct {
			ContainerDefinitions []struct {
				Secrets []struct{ Name, ValueFrom string }
			}
		}
	}
	awstest.JSONCall(t, endpoint, "ecs", "AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition", map[string]string{"taskDefinition": taskDef}, &td)
	var out struct{ SecretString string }
	awstest.JSONCall(t, endpoint, "secretsmanager", "secretsmanager.GetSecretValue", map[string]string{"SecretId": secretARN}, &out)
	var stored map[string]string
	if err := json.Unmarshal([]byte(out.SecretString), &stored); err != nil {
		t.Fatalf("secret is not JSON: %v", err)
	}
	wantValues := map[string]string{"cert_pem": want.CertPEM, "key_pem": want.KeyPEM, "ca_cert_pem": want.CACertPEM}
	injected := map[string]bool{}
	for _, c := range td.TaskDefinition.ContainerDefinitions {
		for _, sec := range c.Secrets {
			name, from := sec.Name, sec.ValueFrom
			key, ok := strings.CutPrefix(from, secretARN+":")
			key, ok2 := strings.CutSuffix(key, "::")
			if !ok || !ok2 || strings.Contains(key, ":") {
				t.Errorf("secret %s from %q, want %s:<json key>::", name, from, secretARN)
				continue
			}
			if name != "FLUIDITY_SERVER_"+strings.ToUpper(key) {
				t.Errorf("JSON key %s injected as %s, want FLUIDITY_SERVER_%s", key, name, strings.ToUpper(key))
			}
			if v, ok := stored[key]; !ok || v != wantValues[key] {
				t.Errorf("secret key %s = %q (present %v), want %q", key, v, ok, wantValues[key])
			}
			injected[key] = true
		}
	}
	if len(injected) != len(stored) || len(injected) != len(wantValues) {
		t.Errorf("injected keys %v, secret keys %v, want the three of %v", injected, stored, wantValues)
	}
}

// A stack update that changes a method re-creates the Deployment: the new
// template (stamped as `go generate ./infra` stamps it) names a new
// Deployment, CloudFormation creates it, and API Gateway has a deployment it
// did not have before. An update that leaves the API alone makes none. (moto
// does not model AWS::ApiGateway::Stage, so that the stage then serves the new
// deployment is CloudFormation's documented behaviour for a changed
// DeploymentId, not something this test can show.)
func TestAPIChangeRedeploysOnMoto(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	cfg := awstest.AWSConfig(endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	putS3(t, endpoint, "fluidity-artifacts", "", nil)
	for _, fn := range []string{"wake", "sleep", "kill"} {
		putS3(t, endpoint, "fluidity-artifacts", "fluidity/"+fn+".zip", bootstrapZip(t))
	}
	body, err := os.ReadFile("control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cf := cloudformation.NewFromConfig(cfg)
	const name = "fluidity-control"
	params := func(logLevel string) []cftypes.Parameter {
		return []cftypes.Parameter{
			{ParameterKey: aws.String("CodeBucket"), ParameterValue: aws.String("fluidity-artifacts")},
			{ParameterKey: aws.String("LogLevel"), ParameterValue: aws.String(logLevel)},
		}
	}
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(name), TemplateBody: aws.String(string(body)), Parameters: params("info"),
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam},
	}); err != nil {
		t.Fatal(err)
	}
	waitComplete(ctx, t, cf, name)

	var apis struct{ Item []struct{ ID string } }
	motoCall(t, endpoint, "apigateway", http.MethodGet, "/restapis", "", nil, &apis)
	if len(apis.Item) != 1 {
		t.Fatalf("rest apis: %+v, want one", apis)
	}
	api := apis.Item[0].ID
	deployments := func() map[string]bool {
		var out struct{ Item []struct{ ID string } }
		motoCall(t, endpoint, "apigateway", http.MethodGet, "/restapis/"+api+"/deployments", "", nil, &out)
		ids := map[string]bool{}
		for _, d := range out.Item {
			ids[d.ID] = true
		}
		return ids
	}
	// moto leaves the Deployment's physical ID empty, so the stack shows the
	// logical ID and API Gateway the deployments.
	deploymentResource := func() (logicalID string) {
		out, err := cf.ListStackResources(ctx, &cloudformation.ListStackResourcesInput{StackName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.StackResourceSummaries {
			if aws.ToString(r.ResourceType) == "AWS::ApiGateway::Deployment" {
				if logicalID != "" {
					t.Fatalf("two Deployments in the stack: %s and %s", logicalID, aws.ToString(r.LogicalResourceId))
				}
				logicalID = aws.ToString(r.LogicalResourceId)
			}
		}
		return logicalID
	}
	update := func(tpl []byte, logLevel string) {
		t.Helper()
		if _, err := cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{
			StackName: aws.String(name), TemplateBody: aws.String(string(tpl)), Parameters: params(logLevel),
			Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam},
		}); err != nil {
			t.Fatalf("update stack: %v", err)
		}
		waitComplete(ctx, t, cf, name)
	}

	before := deployments()
	oldID := deploymentResource()
	if len(before) != 1 || oldID == "" {
		t.Fatalf("after create: deployments %v, stack's Deployment %q", before, oldID)
	}

	// Not the API: a parameter only the functions use.
	update(body, "debug")
	if id, now := deploymentResource(), deployments(); id != oldID || !maps.Equal(now, before) {
		t.Errorf("a non-API update re-created the Deployment: %s → %s, deployments %v → %v", oldID, id, before, now)
	}

	// The API: POST /wake gets an operation name.
	changed := bytes.Replace(body, []byte("      ResourceId: !Ref WakeResource\n      HttpMethod: POST\n"),
		[]byte("      ResourceId: !Ref WakeResource\n      HttpMethod: POST\n      OperationName: Wake\n"), 1)
	if bytes.Equal(changed, body) {
		t.Fatal("the WakeMethod edit did not apply")
	}
	stamped, err := infra.StampDeployment(changed)
	if err != nil {
		t.Fatal(err)
	}
	update(stamped, "debug")
	newID := deploymentResource()
	if want, _ := parseTemplate(t, stamped).DeploymentID(); newID == oldID || newID != want {
		t.Fatalf("after the API change the stack's Deployment is %s (was %s, want %s)", newID, oldID, want)
	}
	after := deployments()
	var fresh []string
	for id := range after {
		if !before[id] {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) != 1 {
		t.Errorf("deployments before %v, after %v: want exactly one new deployment", before, after)
	}
}

func parseTemplate(t *testing.T, b []byte) *infra.Template {
	t.Helper()
	tpl, err := infra.ParseTemplate(b)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// resolveID turns a wantResources ID into the logical ID present in have: the
// ID itself, or for "Name*" the one key starting with Name.
func resolveID[V any](t *testing.T, id string, have map[string]V) string {
	t.Helper()
	prefix, ok := strings.CutSuffix(id, "*")
	if !ok {
		return id
	}
	var found []string
	for k := range have {
		if strings.HasPrefix(k, prefix) {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		t.Errorf("%d logical IDs start with %s (%v), want 1", len(found), prefix, found)
		return id
	}
	return found[0]
}
