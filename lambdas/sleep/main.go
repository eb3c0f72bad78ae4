// Command sleep is the Sleep Lambda, run by EventBridge every 5 minutes: it
// reads the server's activity metrics and sets the Fluidity ECS service's
// desired count to 0 when the idle policy says so (see lifecycle.IdlePolicy).
//
// Environment: CLUSTER_NAME, SERVICE_NAME (required), IDLE_THRESHOLD (15m),
// METRICS_NAMESPACE (Fluidity), LOG_LEVEL (info); AWS settings come from the
// standard SDK chain.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lambdas/internal/handler"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

func main() {
	boot := handler.NewLogger(os.Stdout, "sleep", zerolog.InfoLevel)
	cfg, err := handler.ConfigFromEnv(os.Getenv)
	if err != nil {
		boot.Fatal().Err(err).Msg("configuration")
	}
	log := handler.NewLogger(os.Stdout, "sleep", cfg.LogLevel)
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal().Err(err).Msg("aws configuration")
	}
	svc, err := lifecycle.NewFromConfig(awsCfg, lifecycle.ServiceConfig{Cluster: cfg.Cluster, Service: cfg.Service}, log)
	if err != nil {
		log.Fatal().Err(err).Msg("ecs service")
	}
	mcfg := lifecycle.DefaultMetricsConfig()
	mcfg.Namespace, mcfg.Service = cfg.Namespace, cfg.Service
	metrics, err := lifecycle.NewMetricsReaderFromConfig(awsCfg, mcfg)
	if err != nil {
		log.Fatal().Err(err).Msg("metrics reader")
	}
	h := &handler.Sleep{Policy: lifecycle.IdlePolicy{Threshold: cfg.IdleThreshold}, Service: svc, Metrics: metrics, Log: log}
	lambda.Start(h.Handle)
}
