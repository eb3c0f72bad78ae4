// Command wake is the Wake Lambda behind API Gateway POST /wake: it sets the
// Fluidity ECS service's desired count to 1 and reports state and address.
//
// Environment: CLUSTER_NAME, SERVICE_NAME (required), TUNNEL_PORT (8443),
// LOG_LEVEL (info); AWS settings come from the standard SDK chain.
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
	boot := handler.NewLogger(os.Stdout, "wake", zerolog.InfoLevel)
	cfg, err := handler.ConfigFromEnv(os.Getenv)
	if err != nil {
		boot.Fatal().Err(err).Msg("configuration")
	}
	log := handler.NewLogger(os.Stdout, "wake", cfg.LogLevel)
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal().Err(err).Msg("aws configuration")
	}
	svc, err := lifecycle.NewFromConfig(awsCfg, lifecycle.ServiceConfig{Cluster: cfg.Cluster, Service: cfg.Service}, log)
	if err != nil {
		log.Fatal().Err(err).Msg("ecs service")
	}
	h := &handler.Wake{Service: svc, TunnelPort: cfg.TunnelPort, Log: log}
	lambda.Start(h.Handle)
}
