package deploy

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// inventory is what destroy would remove, found by name.
type inventory struct {
	stacks      []string
	secret      string // ARN, "" when absent
	repo        string // "" when absent or not made by deploy
	foreignRepo bool   // a repository by that name that deploy did not make
	bucket      string
	objects     []string
	ownBucket   bool // the bucket carries ManagedTag
}

func (d *Deployer) inventory(ctx context.Context) (inventory, error) {
	var inv inventory
	for _, name := range []string{d.n.controlStack, d.n.serverStack} {
		st, err := d.describeStack(ctx, name)
		if err != nil {
			return inv, err
		}
		if st != nil {
			inv.stacks = append(inv.stacks, name)
		}
	}
	sec, err := d.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(d.n.secret)})
	switch {
	case err == nil && sec.DeletedDate == nil:
		inv.secret = aws.ToString(sec.ARN)
	case err != nil && apiErrorCode(err) != "ResourceNotFoundException":
		return inv, fmt.Errorf("secret %s: %w", d.n.secret, err)
	}
	repos, err := d.ecr.DescribeRepositories(ctx, &ecr.DescribeRepositoriesInput{RepositoryNames: []string{d.n.repo}})
	switch {
	case err == nil && len(repos.Repositories) == 1:
		tags, err := d.ecr.ListTagsForResource(ctx, &ecr.ListTagsForResourceInput{ResourceArn: repos.Repositories[0].RepositoryArn})
		if err != nil {
			return inv, fmt.Errorf("ecr repository %s: tags: %w", d.n.repo, err)
		}
		for _, t := range tags.Tags {
			if aws.ToString(t.Key) == ManagedTagKey {
				inv.repo = d.n.repo
			}
		}
		inv.foreignRepo = inv.repo == ""
	case err != nil && apiErrorCode(err) != "RepositoryNotFoundException":
		return inv, fmt.Errorf("ecr repository %s: %w", d.n.repo, err)
	}
	account, err := d.account(ctx)
	if err != nil {
		return inv, err
	}
	bucket := d.bucketName(account)
	if _, err := d.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		if !isNotFound(err) {
			return inv, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		return inv, nil
	}
	inv.bucket = bucket
	p := s3.NewListObjectsV2Paginator(d.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(d.n.keyPrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return inv, fmt.Errorf("bucket %s: list: %w", bucket, err)
		}
		for _, o := range page.Contents {
			inv.objects = append(inv.objects, aws.ToString(o.Key))
		}
	}
	tags, err := d.s3.GetBucketTagging(ctx, &s3.GetBucketTaggingInput{Bucket: aws.String(bucket)})
	if err == nil {
		for _, t := range tags.TagSet {
			inv.ownBucket = inv.ownBucket || aws.ToString(t.Key) == ManagedTagKey
		}
	} else if c := apiErrorCode(err); c != "NoSuchTagSet" && c != "NoSuchTagSetError" {
		return inv, fmt.Errorf("bucket %s: tags: %w", bucket, err)
	}
	return inv, nil
}

// DestroyPlan lists what Destroy would remove, one line each; empty when
// nothing is left.
func (d *Deployer) DestroyPlan(ctx context.Context) ([]string, error) {
	inv, err := d.inventory(ctx)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, s := range inv.stacks {
		lines = append(lines, "stack "+s+" and every resource in it")
	}
	if inv.secret != "" {
		lines = append(lines, "secret "+d.n.secret+" (at once, without the recovery window)")
	}
	if inv.repo != "" {
		lines = append(lines, "ecr repository "+inv.repo+" and its images")
	}
	if len(inv.objects) > 0 {
		lines = append(lines, fmt.Sprintf("%d objects under s3://%s/%s", len(inv.objects), inv.bucket, d.n.keyPrefix))
	}
	if inv.ownBucket {
		lines = append(lines, "bucket "+inv.bucket)
	}
	return lines, nil
}

// Destroy removes everything Deploy made: the control-plane stack, then the
// server stack (the Lambdas address the service), the secret, the image
// repository and the Lambda code, and the bucket if deploy created it.
// Repositories and buckets deploy did not create are left, and said so.
func (d *Deployer) Destroy(ctx context.Context) error {
	inv, err := d.inventory(ctx)
	if err != nil {
		return err
	}
	for _, s := range inv.stacks {
		d.say("stack %s: deleting", s)
		if err := d.deleteStack(ctx, s); err != nil {
			return err
		}
		d.say("stack %s: deleted", s)
	}
	if inv.secret != "" {
		if _, err := d.sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{
			SecretId: aws.String(inv.secret), ForceDeleteWithoutRecovery: aws.Bool(true),
		}); err != nil {
			return fmt.Errorf("secret %s: delete: %w", d.n.secret, err)
		}
		d.say("secret %s: deleted", d.n.secret)
	}
	if inv.repo != "" {
		if _, err := d.ecr.DeleteRepository(ctx, &ecr.DeleteRepositoryInput{RepositoryName: aws.String(inv.repo), Force: true}); err != nil {
			return fmt.Errorf("ecr repository %s: delete: %w", inv.repo, err)
		}
		d.say("ecr repository %s: deleted", inv.repo)
	} else if inv.foreignRepo {
		d.say("ecr repository %s: left (not created by fluidity deploy)", d.n.repo)
	}
	for start := 0; start < len(inv.objects); start += 1000 { // DeleteObjects takes 1000 at most
		batch := inv.objects[start:min(start+1000, len(inv.objects))]
		var ids []s3types.ObjectIdentifier
		for _, k := range batch {
			ids = append(ids, s3types.ObjectIdentifier{Key: aws.String(k)})
		}
		out, err := d.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(inv.bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("bucket %s: delete objects: %w", inv.bucket, err)
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("bucket %s: delete %s: %s", inv.bucket, aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
	}
	if len(inv.objects) > 0 {
		d.say("s3://%s/%s: %d objects deleted", inv.bucket, d.n.keyPrefix, len(inv.objects))
	}
	switch {
	case inv.ownBucket:
		if _, err := d.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(inv.bucket)}); err != nil {
			return fmt.Errorf("bucket %s: delete (does it hold objects of others?): %w", inv.bucket, err)
		}
		d.say("bucket %s: deleted", inv.bucket)
	case inv.bucket != "":
		d.say("bucket %s: left (not created by fluidity deploy)", inv.bucket)
	}
	return nil
}
