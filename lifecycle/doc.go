// Package lifecycle wakes, watches and puts to sleep the Fluidity server that
// runs as an ECS Fargate service scaled to zero.
//
// It holds everything the control plane shares between its three users:
//
//   - the Wake, Sleep and Kill Lambdas use [Service] (desired count, state,
//     public IP) and [IdlePolicy] with [MetricsReader];
//   - the server publishes its activity with [Publisher];
//   - the agent talks to the Wake/Kill HTTP API with [APIClient], configured
//     by [ClientConfig], and shares one wake-up among waiting requests with
//     [Waker].
//
// AWS clients come from the standard SDK configuration chain (see
// [NewFromConfig] and [NewCloudWatchClient]), so AWS_ENDPOINT_URL, profiles
// and roles all work. Nothing here reads the environment: programs do that and
// pass values in.
package lifecycle
