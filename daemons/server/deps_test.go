package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestServerLinksNoECSOrEC2 fails when the server's dependencies include the
// SDK's ECS or EC2 clients. The server needs only CloudWatch (lifecycle/usage);
// the ECS service control (lifecycle/fargate) belongs to the Lambdas and the
// CLI, and EC2's client alone costs minutes of compile time on a cold build
// cache: every first `make run`, and every test that builds the server.
func TestServerLinksNoECSOrEC2(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the server's dependencies: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, dep := range deps {
		for _, banned := range []string{"github.com/aws/aws-sdk-go-v2/service/ecs", "github.com/aws/aws-sdk-go-v2/service/ec2"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("the server links %s: import lifecycle/usage for the metrics, not lifecycle/fargate", dep)
			}
		}
	}
}
