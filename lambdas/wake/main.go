// Command wake is the Wake Lambda behind API Gateway POST /wake: it sets the
// Fluidity ECS service's desired count to 1 and reports state and address.
//
// Environment: CLUSTER_NAME, SERVICE_NAME (required), TUNNEL_PORT (443),
// LOG_LEVEL (info); AWS settings come from the standard SDK chain.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/fluidity-tunnel/fluidity/lambdas/internal/handler"
)

func main() {
	env, err := handler.Bootstrap("wake", os.Getenv, os.Stdout)
	if err != nil {
		env.Log.Fatal().Err(err).Msg("start-up")
	}
	h := &handler.Wake{Service: env.Service, TunnelPort: env.Config.TunnelPort, Log: env.Log}
	lambda.Start(h.Handle)
}
