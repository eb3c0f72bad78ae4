package ci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type step struct {
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
}

type workflow struct {
	On   map[string]any `yaml:"on"`
	Jobs map[string]struct {
		RunsOn   string `yaml:"runs-on"`
		Strategy struct {
			Matrix map[string][]string `yaml:"matrix"`
		} `yaml:"strategy"`
		Steps []step `yaml:"steps"`
	} `yaml:"jobs"`
}

func readWorkflow(t *testing.T) workflow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", ".github", "workflows", "ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("ci.yml: %v", err)
	}
	return w
}

func TestWorkflowRunsMakeTest(t *testing.T) {
	w := readWorkflow(t)
	if _, ok := w.On["pull_request"]; !ok {
		t.Error("ci.yml does not run on pull requests")
	}
	job, ok := w.Jobs["test"]
	if !ok {
		t.Fatal("ci.yml has no test job")
	}
	if job.RunsOn != "ubuntu-latest" {
		t.Errorf("test job runs on %q, want ubuntu-latest", job.RunsOn)
	}
	var setupGo, makeTest bool
	for _, s := range job.Steps {
		if strings.HasPrefix(s.Uses, "actions/setup-go@") {
			setupGo = s.With["go-version-file"] == "go.mod"
		}
		if strings.Contains(s.Run, "make test") {
			if !setupGo {
				t.Error("make test runs before actions/setup-go with go-version-file: go.mod")
			}
			makeTest = true
		}
	}
	if !makeTest {
		t.Error("the test job never runs make test")
	}
	if !slices.Contains(job.Strategy.Matrix["go"], "stable") {
		t.Errorf("test job's Go matrix %q lacks stable", job.Strategy.Matrix["go"])
	}

	cross, ok := w.Jobs["cross"]
	if !ok {
		t.Fatal("ci.yml has no cross job")
	}
	if !slices.ContainsFunc(cross.Steps, func(s step) bool { return strings.Contains(s.Run, "make build") }) {
		t.Error("the cross job never runs make build")
	}

	// make test runs the fuzz targets' seed corpora only; the search runs here.
	fuzz, ok := w.Jobs["fuzz"]
	if !ok {
		t.Fatal("ci.yml has no fuzz job")
	}
	if !slices.ContainsFunc(fuzz.Steps, func(s step) bool { return strings.Contains(s.Run, "make fuzz") }) {
		t.Error("the fuzz job never runs make fuzz")
	}
}

// TestCIRunIsMakeTest: the project's own CI (.ci/run) and the workflow run one suite.
func TestCIRunIsMakeTest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "exec make test") {
		t.Errorf(".ci/run does not exec make test:\n%s", b)
	}
}
