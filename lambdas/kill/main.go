// Command kill is the Kill Lambda: API Gateway POST /kill and the nightly
// EventBridge schedule both set the Fluidity ECS service's desired count to 0.
//
// Environment: CLUSTER_NAME, SERVICE_NAME (required), LOG_LEVEL (info); AWS
// settings come from the standard SDK chain.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/fluidity-tunnel/fluidity/lambdas/internal/handler"
)

func main() {
	env, err := handler.Bootstrap("kill", os.Getenv, os.Stdout)
	if err != nil {
		env.Log.Fatal().Err(err).Msg("start-up")
	}
	h := &handler.Kill{Service: env.Service, Log: env.Log}
	lambda.Start(h.Handle)
}
