package deploy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// tlsSecret is the one secret infra/fargate.yaml reads (TlsSecretArn): its
// keys are the server's configuration keys, injected by ECS as
// FLUIDITY_SERVER_CERT_PEM, FLUIDITY_SERVER_KEY_PEM, FLUIDITY_SERVER_CA_CERT_PEM.
type tlsSecret struct {
	CertPEM   string `json:"cert_pem"`
	KeyPEM    string `json:"key_pem"`
	CACertPEM string `json:"ca_cert_pem"`
}

// readTLSSecret reads the files `fluidity certs` writes and checks that the
// certificate and key belong together, so a mixed-up directory fails here and
// not at the server's first start in the cloud.
func readTLSSecret(dir string) (string, error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("certificate directory: %w (run `fluidity certs --dir %s` first)", err, dir)
		}
		return string(b), nil
	}
	var s tlsSecret
	var err error
	if s.CertPEM, err = read("server.crt"); err != nil {
		return "", err
	}
	if s.KeyPEM, err = read("server.key"); err != nil {
		return "", err
	}
	if s.CACertPEM, err = read("ca.crt"); err != nil {
		return "", err
	}
	if _, err := tls.X509KeyPair([]byte(s.CertPEM), []byte(s.KeyPEM)); err != nil {
		return "", fmt.Errorf("%s: server.crt and server.key: %w", dir, err)
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// ensureSecret creates the TLS secret or brings its value up to date and
// returns its full ARN (in a dry run of a first deploy, one of the right form).
func (d *Deployer) ensureSecret(ctx context.Context, account string) (string, error) {
	value, err := readTLSSecret(d.cfg.CertDir)
	if err != nil {
		return "", err
	}
	name := d.n.secret
	desc, err := d.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	switch {
	case apiErrorCode(err) == "ResourceNotFoundException":
		if d.cfg.DryRun {
			d.say("secret %s: would create (from %s)", name, d.cfg.CertDir)
			// The template's pattern wants the 6-character suffix.
			return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-XXXXXX", d.region, account, name), nil
		}
		out, err := d.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
			Name:         aws.String(name),
			Description:  aws.String("Fluidity server TLS material (cert_pem, key_pem, ca_cert_pem)"),
			SecretString: aws.String(value),
			Tags:         []smtypes.Tag{{Key: aws.String(ManagedTagKey), Value: aws.String(ManagedTagValue)}},
		})
		if err != nil {
			return "", fmt.Errorf("secret %s: create: %w", name, err)
		}
		d.say("secret %s: created", name)
		return aws.ToString(out.ARN), nil
	case err != nil:
		return "", fmt.Errorf("secret %s: %w", name, err)
	case desc.DeletedDate != nil:
		return "", fmt.Errorf("secret %s is scheduled for deletion: restore it (aws secretsmanager restore-secret --secret-id %s) or wait until it is gone", name, name)
	}
	arn := aws.ToString(desc.ARN)
	cur, err := d.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("secret %s: read: %w", name, err)
	}
	if sameJSON(aws.ToString(cur.SecretString), value) {
		d.say("secret %s: unchanged", name)
		return arn, nil
	}
	if d.cfg.DryRun {
		d.say("secret %s: would update (the material in %s differs)", name, d.cfg.CertDir)
		return arn, nil
	}
	if _, err := d.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(arn), SecretString: aws.String(value)}); err != nil {
		return "", fmt.Errorf("secret %s: update: %w", name, err)
	}
	// ECS reads the secret when a task starts: the ARN is the same, so the
	// stack does not change and a running task keeps the old material.
	d.say("secret %s: updated; a running server uses it from its next start", name)
	return arn, nil
}

func sameJSON(a, b string) bool {
	var x, y tlsSecret
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && x == y
}

// ensureECSServiceLinkedRole makes sure AWSServiceRoleForECS exists: in an
// account that never used ECS, a cluster created by CloudFormation can fail
// before ECS has made it itself (see the README's walk-through, step 3). It
// is account-wide, so destroy leaves it.
func (d *Deployer) ensureECSServiceLinkedRole(ctx context.Context) error {
	// Listed by path rather than fetched by name: the path is what IAM
	// fixes for a service's linked role.
	const path = "/aws-service-role/ecs.amazonaws.com/"
	out, err := d.iam.ListRoles(ctx, &iam.ListRolesInput{PathPrefix: aws.String(path)})
	if err != nil {
		return fmt.Errorf("iam roles under %s: %w", path, err)
	}
	if len(out.Roles) > 0 {
		return nil
	}
	if d.cfg.DryRun {
		d.say("iam service-linked role for ECS: would create")
		return nil
	}
	_, err = d.iam.CreateServiceLinkedRole(ctx, &iam.CreateServiceLinkedRoleInput{AWSServiceName: aws.String("ecs.amazonaws.com")})
	if err != nil && !apiErrorIs(err, "InvalidInput", "has been taken") && apiErrorCode(err) != "EntityAlreadyExists" {
		return fmt.Errorf("iam service-linked role for ECS: %w", err)
	}
	d.say("iam service-linked role for ECS: created")
	return nil
}
