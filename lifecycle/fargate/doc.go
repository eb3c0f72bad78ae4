// Package fargate wakes, watches and puts to sleep the Fluidity server that
// runs as an ECS Fargate service scaled to zero. It is the AWS half of the
// lifecycle, used by the control plane: the Wake, Sleep and Kill Lambdas use
// [Service] (desired count, state, public IP), [IdlePolicy] (Sleep) and
// [ExitPolicy] (an agent's Kill on exit) with the metrics the server
// publishes (package lifecycle/usage), and answer the
// Wake/Kill API with [ResultFromStatus]. The server itself imports only
// lifecycle/usage, which links the CloudWatch client and not this package's
// ECS and EC2 ones.
//
// It is a package of its own, apart from package lifecycle (the agent's
// Wake/Kill API client), so that the agent links no AWS SDK: the ECS, EC2 and
// CloudWatch clients cost minutes of compile time and megabytes of binary on
// every platform the agent ships for. This package may import lifecycle for
// the shared types ([lifecycle.State], [lifecycle.WakeResult]); lifecycle
// must never import it, and a test in daemons/agent fails if the agent's
// dependencies include the SDK.
//
// AWS clients come from the standard SDK configuration chain (see
// [NewFromConfig]), so AWS_ENDPOINT_URL, profiles
// and roles all work. Nothing here reads the environment: programs do that and
// pass values in.
package fargate
