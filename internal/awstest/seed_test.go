package awstest_test

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
)

// The seeded service must look, through the product code, like a real
// Fargate service with a running, reachable task.
func TestSeedLooksRunning(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	f := awstest.Seed(t, endpoint, awstest.SeedConfig{DesiredCount: 1, PublicIP: "127.0.0.1"})
	svc, err := fargate.NewFromConfig(awstest.AWSConfig(endpoint), fargate.ServiceConfig{Cluster: f.Cluster, Service: f.Service}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Twice: the task must not drift to STOPPED on repeated DescribeTasks.
	for i := 0; i < 2; i++ {
		st, err := svc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != lifecycle.StateRunning || st.PublicIP != "127.0.0.1" || st.TaskARN != f.TaskARN {
			t.Fatalf("status %d = %+v, want running at 127.0.0.1 (task %s)", i, st, f.TaskARN)
		}
	}
}

// The seeded secret reads back as the JSON object fargate.yaml's task
// definition takes its three keys from.
func TestSeedTLSSecret(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	want := awstest.TLSSecret{CertPEM: "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n", KeyPEM: "k\n", CACertPEM: "ca\n"}
	arn := awstest.SeedTLSSecret(t, endpoint, "fluidity/server-tls", want)
	if !regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:[0-9]{12}:secret:fluidity/server-tls-[A-Za-z0-9]{6}$`).MatchString(arn) {
		t.Errorf("ARN %q is not a full secret ARN", arn)
	}
	var out struct{ SecretString string }
	awstest.JSONCall(t, endpoint, "secretsmanager", "secretsmanager.GetSecretValue", map[string]string{"SecretId": arn}, &out)
	var got map[string]string
	if err := json.Unmarshal([]byte(out.SecretString), &got); err != nil {
		t.Fatalf("secret string %q: %v", out.SecretString, err)
	}
	if len(got) != 3 || got["cert_pem"] != want.CertPEM || got["key_pem"] != want.KeyPEM || got["ca_cert_pem"] != want.CACertPEM {
		t.Errorf("secret = %v, want the three keys of %+v", got, want)
	}
}
