// Command sleep is the Sleep Lambda, run by EventBridge every 5 minutes: it
// reads the server's activity metrics and sets the Fluidity ECS service's
// desired count to 0 when the idle policy says so (see fargate.IdlePolicy):
// idle on two consecutive checks and past the grace after a Wake, or
// crash-looping.
//
// Environment: CLUSTER_NAME, SERVICE_NAME (required), IDLE_THRESHOLD (15m),
// WAKE_GRACE (10m), IDLE_CONFIRM_AFTER (1m), CRASH_BOUND (10m),
// METRICS_NAMESPACE (Fluidity), LOG_LEVEL (info); AWS settings come from the
// standard SDK chain.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/fluidity-tunnel/fluidity/lambdas/internal/handler"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

func main() {
	env, err := handler.Bootstrap("sleep", os.Getenv, os.Stdout)
	if err != nil {
		env.Log.Fatal().Err(err).Msg("start-up")
	}
	mcfg := usage.DefaultMetricsConfig()
	mcfg.Namespace, mcfg.Service = env.Config.Namespace, env.Config.Service
	metrics, err := usage.NewMetricsReaderFromConfig(env.AWS, mcfg)
	if err != nil {
		env.Log.Fatal().Err(err).Msg("metrics reader")
	}
	h := &handler.Sleep{Policy: env.Config.Policy(), Service: env.Service, Metrics: metrics, Log: env.Log}
	lambda.Start(h.Handle)
}
