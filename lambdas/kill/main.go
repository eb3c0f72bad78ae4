// Command kill is the Kill Lambda: API Gateway POST /kill and the nightly
// EventBridge schedule both set the Fluidity ECS service's desired count to
// 0; an agent's Kill on exit ({"reason":"agent_exit"}) is refused with 409
// in_use while someone else may use the server (see handler.Kill).
//
// Environment: CLUSTER_NAME, SERVICE_NAME (required), WAKE_GRACE (10m),
// METRICS_INTERVAL (the server's metrics_interval, 1m), METRICS_PERIOD (1m;
// shorter only against an emulator), METRICS_NAMESPACE (Fluidity), LOG_LEVEL
// (info); AWS settings come from the standard SDK chain.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/fluidity-tunnel/fluidity/lambdas/internal/handler"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

func main() {
	env, err := handler.Bootstrap("kill", os.Getenv, os.Stdout)
	if err != nil {
		env.Log.Fatal().Err(err).Msg("start-up")
	}
	mcfg := usage.DefaultMetricsConfig()
	mcfg.Namespace, mcfg.Service, mcfg.Period = env.Config.Namespace, env.Config.Service, env.Config.MetricsPeriod
	metrics, err := usage.NewMetricsReaderFromConfig(env.AWS, mcfg)
	if err != nil {
		env.Log.Fatal().Err(err).Msg("metrics reader")
	}
	h := &handler.Kill{Service: env.Service, Metrics: metrics, Policy: env.Config.ExitPolicy(), Log: env.Log}
	lambda.Start(h.Handle)
}
