package infra_test

import (
	"os"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// templateMap decodes a template into plain maps. Short-form tags (!Ref,
// !Sub, …) are dropped and leave their argument, which is enough to compare
// shapes.
func templateMap(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// dig follows map keys and list indexes (ints) through a decoded template.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: %T is not a map", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at [%d]: %T is not a list that long", k, v)
			}
			v = l[k]
		}
	}
	return v
}

// The trust policies use only the forms the ECS Developer Guide documents:
// none for the task execution role, the confused-deputy condition for the
// task role (see the comments in fargate.yaml for the pages).
func TestTrustPolicies(t *testing.T) {
	t.Parallel()
	tpl := templateMap(t, "fargate.yaml")
	trust := func(role string) map[string]any {
		stmts := dig(t, tpl, "Resources", role, "Properties", "AssumeRolePolicyDocument", "Statement").([]any)
		if len(stmts) != 1 {
			t.Fatalf("%s: %d trust statements, want 1", role, len(stmts))
		}
		return stmts[0].(map[string]any)
	}
	wantBase := map[string]any{
		"Effect":    "Allow",
		"Principal": map[string]any{"Service": "ecs-tasks.amazonaws.com"},
		"Action":    "sts:AssumeRole",
	}
	if got := trust("ExecutionRole"); !reflect.DeepEqual(got, wantBase) {
		t.Errorf("ExecutionRole trust statement = %v, want exactly %v (no condition)", got, wantBase)
	}
	task := trust("TaskRole")
	cond := task["Condition"]
	delete(task, "Condition")
	if !reflect.DeepEqual(task, wantBase) {
		t.Errorf("TaskRole trust statement = %v, want %v plus the condition", task, wantBase)
	}
	wantCond := map[string]any{
		"ArnLike":      map[string]any{"aws:SourceArn": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*"},
		"StringEquals": map[string]any{"aws:SourceAccount": "AWS::AccountId"},
	}
	if !reflect.DeepEqual(cond, wantCond) {
		t.Errorf("TaskRole trust condition = %v, want %v", cond, wantCond)
	}
}

// The execution role may read the one TLS secret and nothing else.
func TestExecutionRoleReadsOnlyTheTLSSecret(t *testing.T) {
	t.Parallel()
	tpl := templateMap(t, "fargate.yaml")
	pols := dig(t, tpl, "Resources", "ExecutionRole", "Properties", "Policies").([]any)
	if len(pols) != 1 {
		t.Fatalf("%d inline policies, want 1", len(pols))
	}
	stmts := dig(t, pols[0], "PolicyDocument", "Statement").([]any)
	want := []any{map[string]any{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "TlsSecretArn"}}
	if !reflect.DeepEqual(stmts, want) {
		t.Errorf("execution role statements = %v, want %v", stmts, want)
	}
}
