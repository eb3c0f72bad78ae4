// Command kill is the Kill Lambda: API Gateway POST /kill and the nightly
// EventBridge schedule both set the Fluidity ECS service's desired count to 0.
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
	boot := handler.NewLogger(os.Stdout, "kill", zerolog.InfoLevel)
	cfg, err := handler.ConfigFromEnv(os.Getenv)
	if err != nil {
		boot.Fatal().Err(err).Msg("configuration")
	}
	log := handler.NewLogger(os.Stdout, "kill", cfg.LogLevel)
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal().Err(err).Msg("aws configuration")
	}
	svc, err := lifecycle.NewFromConfig(awsCfg, lifecycle.ServiceConfig{Cluster: cfg.Cluster, Service: cfg.Service}, log)
	if err != nil {
		log.Fatal().Err(err).Msg("ecs service")
	}
	h := &handler.Kill{Service: svc, TunnelPort: cfg.TunnelPort, Log: log}
	lambda.Start(h.Handle)
}
