package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// awsModules are the import-path prefixes of the AWS SDK. The agent talks to the
// Wake/Kill API over plain net/http (package lifecycle); the SDK's ECS, EC2 and
// CloudWatch clients belong to the Lambdas and the server (lifecycle/fargate) and
// would cost the agent minutes of compile time and megabytes of binary on every
// platform it ships for.
var awsModules = []string{"github.com/aws/aws-sdk-go-v2", "github.com/aws/smithy-go"}

// TestAgentLinksNoAWSSDK fails when anything the agent imports, directly or not,
// pulls in the AWS SDK, for each operating system the agent is built for (build
// tags can differ per OS). Test-only imports do not count: they are not linked.
func TestAgentLinksNoAWSSDK(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the agent's dependencies: %v", err)
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					stderr = ee.Stderr
				}
				t.Fatalf("go list -deps: %v\n%s", err, stderr)
			}
			// One line per dependency: its import path, then what it imports.
			var linked, culprits []string
			n := 0
			for line := range strings.Lines(string(out)) {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				n++
				if isAWS(f[0]) {
					linked = append(linked, f[0])
					continue
				}
				if !strings.HasPrefix(f[0], "github.com/fluidity-tunnel/") {
					continue
				}
				for _, imp := range f[1:] {
					if isAWS(imp) {
						culprits = append(culprits, f[0]+" imports "+imp)
					}
				}
			}
			if n == 0 {
				t.Fatal("go list -deps listed nothing")
			}
			if len(linked) > 0 {
				t.Errorf("the agent links %d AWS SDK package(s), e.g. %s; import package lifecycle, not lifecycle/fargate:\n%s",
					len(linked), linked[0], strings.Join(culprits, "\n"))
			}
		})
	}
}

func isAWS(path string) bool {
	for _, m := range awsModules {
		if path == m || strings.HasPrefix(path, m+"/") {
			return true
		}
	}
	return false
}
