package main

import (
	"path/filepath"
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
		for _, banned := range []string{"github.com/aws/aws-sdk-go-v2/service/ecs", sdkEC2} {
			if linksPackage(dep, banned) {
				t.Errorf("the server links %s: import lifecycle/usage for the metrics, not lifecycle/fargate", dep)
			}
		}
	}
}

// sdkEC2 is the SDK's EC2 client: ~120 CPU-seconds to compile on an empty
// build cache (more than the whole standard library), once per build
// configuration, and megabytes in every binary that links it, for the two
// Describe calls internal/ec2query makes.
const sdkEC2 = "github.com/aws/aws-sdk-go-v2/service/ec2"

// TestNoBinaryLinksSDKEC2 fails when any binary Fluidity ships links the
// SDK's EC2 client again: use internal/ec2query for EC2 calls.
func TestNoBinaryLinksSDKEC2(t *testing.T) {
	t.Parallel()
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"daemons/agent", "daemons/server", "daemons/fluidity", "lambdas/wake", "lambdas/sleep", "lambdas/kill"} {
		t.Run(strings.ReplaceAll(bin, "/", "_"), func(t *testing.T) {
			t.Parallel()
			deps, err := testbin.Deps(filepath.Join(root, bin), []string{"GOOS=linux"})
			if err != nil {
				t.Fatal(err)
			}
			for _, dep := range deps {
				if linksPackage(dep, sdkEC2) {
					t.Errorf("%s links %s: make EC2 calls with internal/ec2query", bin, dep)
				}
			}
		})
	}
}

func linksPackage(dep, pkg string) bool {
	return dep == pkg || strings.HasPrefix(dep, pkg+"/")
}
