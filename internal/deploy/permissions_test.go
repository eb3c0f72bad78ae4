package deploy

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fluidity-tunnel/fluidity/infra"
)

// policyActions returns the actions of every Allow statement of a policy.
func policyActions(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Sid      string
			Effect   string
			Action   any
			Resource any
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.Version != "2012-10-17" {
		t.Errorf("%s: Version %q", path, doc.Version)
	}
	got := map[string]bool{}
	for _, st := range doc.Statement {
		if st.Effect != "Allow" || st.Sid == "" || st.Resource == nil {
			t.Errorf("%s: statement %q: want a Sid, Effect Allow and a Resource", path, st.Sid)
		}
		switch a := st.Action.(type) {
		case string:
			got[a] = true
		case []any:
			for _, x := range a {
				got[x.(string)] = true
			}
		}
	}
	return got
}

// templateTypes are the resource types of the templates deploy creates.
func templateTypes(t *testing.T) map[string]bool {
	t.Helper()
	types := map[string]bool{}
	for _, body := range []string{infra.FargateTemplate, infra.ControlPlaneTemplate} {
		var doc struct {
			Resources map[string]struct {
				Type string `yaml:"Type"`
			} `yaml:"Resources"`
		}
		// Short-form tags (!Ref, !Sub) decode as their plain argument.
		if err := yaml.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		for _, r := range doc.Resources {
			types[r.Type] = true
		}
	}
	return types
}

// infra/deployer-policy.json allows exactly what deploy's own calls, the
// image push and CloudFormation's work on the templates' resources need:
// nothing missing, nothing extra.
func TestDeployerPolicyMatchesTheCalls(t *testing.T) {
	t.Parallel()
	need := map[string]bool{}
	for _, acts := range Calls {
		for _, a := range acts {
			need[a] = true
		}
	}
	for _, a := range RegistryActions {
		need[a] = true
	}
	types := templateTypes(t)
	for typ := range types {
		acts, ok := StackResourceActions[typ]
		if !ok {
			t.Errorf("the templates create %s, for which StackResourceActions names no permissions", typ)
		}
		for _, a := range acts {
			need[a] = true
		}
	}
	for typ := range StackResourceActions {
		if !types[typ] {
			t.Errorf("StackResourceActions lists %s, which no template creates", typ)
		}
	}
	have := policyActions(t, "../../infra/deployer-policy.json")
	for _, a := range slices.Sorted(maps.Keys(need)) {
		if !have[a] {
			t.Errorf("infra/deployer-policy.json lacks %s", a)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(have)) {
		if !need[a] {
			t.Errorf("infra/deployer-policy.json allows %s, which nothing needs", a)
		}
	}
}
