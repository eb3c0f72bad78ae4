package ec2query

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	fretry "github.com/fluidity-tunnel/fluidity/internal/retry"
)

// newRetryer picks the retryer as the SDK's clients do: cfg.Retryer, else
// the standard (or adaptive) one, capped at cfg.RetryMaxAttempts when set.
func newRetryer(cfg aws.Config) aws.RetryerV2 {
	var r aws.Retryer
	switch {
	case cfg.Retryer != nil:
		r = cfg.Retryer()
	case cfg.RetryMode == aws.RetryModeAdaptive:
		r = retry.NewAdaptiveMode()
	default:
		r = retry.NewStandard()
	}
	if cfg.RetryMaxAttempts != 0 {
		r = retry.AddWithMaxAttempts(r, cfg.RetryMaxAttempts)
	}
	if v2, ok := r.(aws.RetryerV2); ok {
		return v2
	}
	return retryerV2{r}
}

// retryerV2 adapts a retryer that predates GetAttemptToken.
type retryerV2 struct{ aws.Retryer }

func (r retryerV2) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}

func nopRelease(error) error { return nil }

// withRetries runs attempt until it succeeds, fails for good, or the
// retryer's attempts, retry quota or ctx run out: the loop of the SDK's
// retry middleware (aws/retry.Attempt), without its metrics and clock-skew
// correction.
func (c *Client) withRetries(ctx context.Context, attempt func(context.Context) error) error {
	releaseRetry := nopRelease
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return &aws.RequestCanceledError{Err: err}
		}
		releaseAttempt, err := c.retryer.GetAttemptToken(ctx)
		if err != nil {
			return fmt.Errorf("get retry send token: %w", err)
		}
		err = attempt(ctx)
		_ = releaseRetry(err)
		_ = releaseAttempt(err)
		if err == nil {
			return nil
		}
		if !c.retryer.IsErrorRetryable(err) {
			return err
		}
		if limit := c.retryer.MaxAttempts(); limit > 0 && n >= limit {
			return &retry.MaxAttemptsError{Attempt: n, Err: err}
		}
		var tokenErr error
		if releaseRetry, tokenErr = c.retryer.GetRetryToken(ctx, err); tokenErr != nil {
			return errors.Join(err, tokenErr)
		}
		delay, err2 := c.retryer.RetryDelay(n, err)
		if err2 != nil {
			return errors.Join(err, err2)
		}
		if err := fretry.Sleep(ctx, delay); err != nil {
			return &aws.RequestCanceledError{Err: err}
		}
	}
}
