// Package usage is the server's activity as CloudWatch metrics: the
// [Publisher] the server runs (active streams, last activity and, with a
// [SessionCounter], agent sessions) and the [MetricsReader] with which the
// Sleep and Kill Lambdas read it back.
//
// It is apart from package fargate (the ECS service control the Lambdas use)
// so that the server links only the CloudWatch client, not the ECS and EC2
// ones: EC2's client alone is minutes of compile time on a cold build cache,
// which every first `make run` and every test that builds the server would
// pay. A test in daemons/server fails if the server's dependencies include
// them.
//
// The CloudWatch client comes from the standard SDK configuration chain (see
// [NewCloudWatchClient]). Nothing here reads the environment.
package usage
