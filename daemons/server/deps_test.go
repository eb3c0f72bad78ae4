package main

import (
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// TestServerLinksNoECSOrEC2 fails when the server's dependencies include the
// SDK's ECS or EC2 clients. The server needs only CloudWatch (lifecycle/usage);
// the ECS service control (lifecycle/fargate) belongs to the Lambdas and the
// CLI, and EC2's client alone costs minutes of compile time on a cold build
// cache: every first `make run`, and every test that builds the server.
func TestServerLinksNoECSOrEC2(t *testing.T) {
	t.Parallel()
	deps, err := testbin.Deps(".", []string{"GOOS=linux"})
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range deps {
		for _, banned := range []string{"github.com/aws/aws-sdk-go-v2/service/ecs", "github.com/aws/aws-sdk-go-v2/service/ec2"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("the server links %s: import lifecycle/usage for the metrics, not lifecycle/fargate", dep)
			}
		}
	}
}
