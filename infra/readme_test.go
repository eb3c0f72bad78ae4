package infra_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's AWS walk-through stays in step with the templates: each
// `aws cloudformation deploy` passes only parameters the template declares and
// every parameter that has no default, and the ECS service-linked role step
// comes before the Fargate stack.
func TestWalkThroughInStep(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	// One command: continuation lines joined.
	deploys := regexp.MustCompile(`(?m)^aws cloudformation deploy (?:.*\\\n)*.*$`).FindAllString(readme, -1)
	seen := map[string]bool{}
	for _, cmd := range deploys {
		cmd = strings.ReplaceAll(cmd, "\\\n", " ")
		m := regexp.MustCompile(`--template-file infra/(\S+)`).FindStringSubmatch(cmd)
		if m == nil {
			t.Errorf("deploy without --template-file infra/…: %s", cmd)
			continue
		}
		file := m[1]
		seen[file] = true
		params := templateMap(t, file)["Parameters"].(map[string]any)
		_, overrides, ok := strings.Cut(cmd, "--parameter-overrides")
		if !ok {
			t.Errorf("%s: deploy without --parameter-overrides", file)
			continue
		}
		given := map[string]bool{}
		for _, f := range strings.Fields(overrides) {
			k, _, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			given[k] = true
			if _, ok := params[k]; !ok {
				t.Errorf("README passes %s to %s, which has no such parameter", k, file)
			}
		}
		for k, v := range params {
			if _, hasDefault := v.(map[string]any)["Default"]; !hasDefault && !given[k] {
				t.Errorf("README's deploy of %s does not pass %s, which has no default", file, k)
			}
		}
	}
	for _, f := range templates {
		if !seen[f] {
			t.Errorf("README has no `aws cloudformation deploy` of infra/%s", f)
		}
	}

	slr := strings.Index(readme, "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com")
	fargate := strings.Index(readme, "--template-file infra/fargate.yaml")
	if slr < 0 || fargate < 0 || slr > fargate {
		t.Errorf("the ECS service-linked role step (at %d) must come before the Fargate stack (at %d)", slr, fargate)
	}
	if !strings.Contains(readme, `grep -q "has been taken"`) {
		t.Error("the service-linked role step does not ignore an existing role (\"has been taken\")")
	}
}
