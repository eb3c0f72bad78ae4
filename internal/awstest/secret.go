package awstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// TLSSecret is the server's TLS material as infra/fargate.yaml expects it in
// its one Secrets Manager secret: a JSON object whose keys are the server's
// configuration keys, which ECS injects as FLUIDITY_SERVER_CERT_PEM,
// FLUIDITY_SERVER_KEY_PEM and FLUIDITY_SERVER_CA_CERT_PEM.
type TLSSecret struct {
	CertPEM   string `json:"cert_pem"`
	KeyPEM    string `json:"key_pem"`
	CACertPEM string `json:"ca_cert_pem"`
}

// SeedTLSSecret creates the secret name holding s as JSON, as the README's
// walk-through does with create-secret, and returns its full ARN.
func SeedTLSSecret(t testing.TB, endpoint, name string, s TLSSecret) string {
	t.Helper()
	value, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ ARN string }
	JSONCall(t, endpoint, "secretsmanager", "secretsmanager.CreateSecret",
		map[string]string{"Name": name, "SecretString": string(value)}, &out)
	if out.ARN == "" {
		t.Fatalf("seed: create secret %s returned no ARN", name)
	}
	return out.ARN
}

// JSONCall makes one call to an AWS JSON-protocol API (X-Amz-Target) in moto,
// for services the module has no SDK client for. moto routes by the service
// in the credential scope and does not check signatures.
func JSONCall(t testing.TB, endpoint, service, target string, in, out any) {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, endpoint+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	date := time.Now().UTC().Format("20060102")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+AccessKeyID+"/"+date+"/"+Region+
		"/"+service+"/aws4_request, SignedHeaders=host, Signature=0")
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s\n%s", target, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: decode %s: %v", target, b, err)
		}
	}
}
