package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// lambdaNames are the functions of infra/control-plane.yaml, in its
// parameter order (WakeCodeKey, SleepCodeKey, KillCodeKey).
var lambdaNames = []string{"wake", "sleep", "kill"}

// lambdaZips returns each function's zip: from LambdaDir, or built from
// SourceDir as the README's walk-through builds them.
func (d *Deployer) lambdaZips(ctx context.Context) (map[string][]byte, error) {
	zips := map[string][]byte{}
	if d.cfg.LambdaDir != "" {
		for _, fn := range lambdaNames {
			b, err := os.ReadFile(filepath.Join(d.cfg.LambdaDir, fn+".zip"))
			if err != nil {
				return nil, fmt.Errorf("lambda code: %w", err)
			}
			zips[fn] = b
		}
		return zips, nil
	}
	if d.cfg.SourceDir == "" {
		return nil, fmt.Errorf("%w: no Lambda code: give a directory with wake.zip, sleep.zip and kill.zip, or run from a Fluidity source checkout", ErrInvalid)
	}
	dir, err := os.MkdirTemp("", "fluidity-lambdas-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	d.say("lambdas: building %v for linux/%s", lambdaNames, d.cfg.Arch)
	args := []string{"build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", dir + string(filepath.Separator)}
	for _, fn := range lambdaNames {
		args = append(args, "./lambdas/"+fn)
	}
	cmd := exec.CommandContext(ctx, "go", args...) // #nosec G204 -- go build of this repository's own Lambda packages
	cmd.Dir = d.cfg.SourceDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+d.cfg.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build lambdas: %w\n%s", err, out)
	}
	for _, fn := range lambdaNames {
		bin, err := os.ReadFile(filepath.Join(dir, fn))
		if err != nil {
			return nil, fmt.Errorf("build lambdas: %w", err)
		}
		if zips[fn], err = bootstrapZip(bin); err != nil {
			return nil, err
		}
	}
	return zips, nil
}

// bootstrapZip packs one binary as "bootstrap" (the provided.al2023 runtime's
// entry point) with a fixed time stamp: the same binary gives the same zip,
// hence the same S3 key, and the stack sees no change.
func bootstrapZip(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(bin); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ensureLambdaCode uploads each zip under a key named by its content and
// returns the keys by function. CloudFormation redeploys a function only
// when its key changes, which is exactly when its code does.
func (d *Deployer) ensureLambdaCode(ctx context.Context, bucket string) (map[string]string, error) {
	zips, err := d.lambdaZips(ctx)
	if err != nil {
		return nil, err
	}
	exists, err := d.ensureBucket(ctx, bucket)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for _, fn := range lambdaNames {
		sum := sha256.Sum256(zips[fn])
		key := fmt.Sprintf("%slambda/%s-%s.zip", d.n.keyPrefix, fn, hex.EncodeToString(sum[:8]))
		keys[fn] = key
		if exists {
			if _, err := d.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err == nil {
				d.say("lambda %s: s3://%s/%s is there already", fn, bucket, key)
				continue
			} else if !isNotFound(err) {
				return nil, fmt.Errorf("lambda %s: s3://%s/%s: %w", fn, bucket, key, err)
			}
		}
		if d.cfg.DryRun {
			d.say("lambda %s: would upload s3://%s/%s", fn, bucket, key)
			continue
		}
		if _, err := d.s3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(zips[fn]),
			ContentType: aws.String("application/zip"),
		}); err != nil {
			return nil, fmt.Errorf("lambda %s: upload to s3://%s/%s: %w", fn, bucket, key, err)
		}
		d.say("lambda %s: uploaded s3://%s/%s", fn, bucket, key)
	}
	return keys, nil
}

// ensureBucket creates the code bucket when missing (tagged, so destroy
// knows it may delete it) and reports whether it exists now.
func (d *Deployer) ensureBucket(ctx context.Context, bucket string) (bool, error) {
	_, err := d.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err == nil {
		return true, nil
	}
	if !isNotFound(err) {
		return false, fmt.Errorf("bucket %s: %w (name it with --bucket if it belongs to someone else)", bucket, err)
	}
	if d.cfg.DryRun {
		d.say("bucket %s: would create", bucket)
		return false, nil
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if d.region != "us-east-1" { // us-east-1 refuses its own name as a constraint
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(d.region)}
	}
	if _, err := d.s3.CreateBucket(ctx, in); err != nil {
		return false, fmt.Errorf("bucket %s: create: %w", bucket, err)
	}
	if _, err := d.s3.PutBucketTagging(ctx, &s3.PutBucketTaggingInput{
		Bucket:  aws.String(bucket),
		Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String(ManagedTagKey), Value: aws.String(ManagedTagValue)}}},
	}); err != nil {
		return false, fmt.Errorf("bucket %s: tag: %w", bucket, err)
	}
	d.say("bucket %s: created", bucket)
	return true, nil
}

// isNotFound: S3's HEAD answers carry no error body, only the status.
func isNotFound(err error) bool {
	switch apiErrorCode(err) {
	case "NotFound", "NoSuchBucket", "NoSuchKey", "404":
		return true
	}
	return false
}
