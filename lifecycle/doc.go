// Package lifecycle is the agent's side of waking and stopping the Fluidity
// server: a client for the Wake/Kill HTTP API (API Gateway in front of the
// Lambdas) and the answers it understands.
//
//   - [APIClient] calls Wake and Kill and decodes their [WakeResult] or
//     [APIError];
//   - [ClientConfig] is the agent's lifecycle configuration section;
//   - [Waker] shares one wake-up among the requests waiting for the server;
//   - [OwnSessions] follows the agent's own sessions for its Kill on exit
//     ([AgentUse], [APIClient.KillOnExit]).
//
// The package is plain net/http and imports no AWS SDK package, so the agent,
// built for six platforms, links none of it. The AWS side (the ECS service,
// the CloudWatch metrics and the idle policy the Lambdas and the server use)
// is in package lifecycle/fargate, which imports this one for the shared
// [State] names; never the other way round. Nothing here reads the
// environment: programs do that and pass values in.
package lifecycle
