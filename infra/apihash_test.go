package infra_test

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fluidity-tunnel/fluidity/infra"
)

// The committed template carries the hash of its own API: otherwise a stack
// update with a changed API would keep serving the old Deployment.
func TestDeploymentIDInStep(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tpl := parseTemplate(t, b)
	got, err := tpl.DeploymentID()
	if err != nil {
		t.Fatal(err)
	}
	if want := tpl.WantDeploymentID(); got != want {
		t.Fatalf("control-plane.yaml's Deployment is %s, but the API hashes to %s: run `go generate ./infra`", got, want)
	}
	out, err := infra.StampDeployment(b)
	if err != nil || !bytes.Equal(out, b) {
		t.Fatalf("stamping the committed template changes it (err %v)", err)
	}
	// What the hash covers: the API and the functions its integrations name.
	want := []string{"Api", "KillFunction", "KillMethod", "KillResource", "WakeFunction", "WakeMethod", "WakeResource"}
	if got := tpl.APIResources(); !slices.Equal(got, want) {
		t.Errorf("hashed resources %v, want %v", got, want)
	}
}

// The Deployment depends on every method, so that it is created after them
// and contains them.
func TestDeploymentDependsOnEveryMethod(t *testing.T) {
	t.Parallel()
	tpl := templateMap(t, "control-plane.yaml")
	res := tpl["Resources"].(map[string]any)
	var methods, deps []string
	for id, r := range res {
		body := r.(map[string]any)
		switch body["Type"] {
		case "AWS::ApiGateway::Method":
			methods = append(methods, id)
		case "AWS::ApiGateway::Deployment":
			for _, d := range body["DependsOn"].([]any) {
				deps = append(deps, d.(string))
			}
		}
	}
	slices.Sort(methods)
	slices.Sort(deps)
	if !slices.Equal(methods, deps) {
		t.Errorf("Deployment DependsOn %v, want every method %v", deps, methods)
	}
}

// Any change to any value of the API's definition changes the Deployment's
// logical ID: every scalar of every hashed resource is changed in turn (values
// and keys), and a method is added and one removed.
func TestAnyAPIChangeChangesDeploymentID(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := parseTemplate(t, b)
	baseID := base.WantDeploymentID()
	hashed := map[string]bool{}
	for _, id := range base.APIResources() {
		hashed[id] = true
	}

	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	resources := nodeValue(doc.Content[0], "Resources")
	changed := 0
	for i := 0; i+1 < len(resources.Content); i += 2 {
		id := resources.Content[i].Value
		if !hashed[id] {
			continue
		}
		for _, s := range scalars(resources.Content[i+1]) {
			old := s.Value
			s.Value = old + "X"
			out, err := yaml.Marshal(&doc)
			s.Value = old
			if err != nil {
				t.Fatal(err)
			}
			if got := parseTemplate(t, out).WantDeploymentID(); got == baseID {
				t.Errorf("%s: changing %q to %q leaves the Deployment ID %s", id, old, old+"X", got)
			}
			changed++
		}
	}
	if changed < 30 {
		t.Fatalf("only %d scalars changed: the walk missed the API", changed)
	}

	// A new method (copy of WakeMethod on the kill resource with GET), and a
	// removed one.
	added := strings.Replace(string(b), "  KillMethod:\n", "  KillGetMethod:\n    Type: AWS::ApiGateway::Method\n    Properties:\n      RestApiId: !Ref Api\n      ResourceId: !Ref KillResource\n      HttpMethod: GET\n      AuthorizationType: NONE\n      ApiKeyRequired: true\n      Integration:\n        Type: MOCK\n\n  KillMethod:\n", 1)
	if got := parseTemplate(t, []byte(added)).WantDeploymentID(); got == baseID {
		t.Error("adding a method leaves the Deployment ID")
	}
	removed := removeResource(t, b, "KillMethod")
	if got := parseTemplate(t, removed).WantDeploymentID(); got == baseID {
		t.Error("removing a method leaves the Deployment ID")
	}
}

// What is not the API leaves the ID alone: comments, quoting, key order, and resources
// outside the snapshot (stage settings, keys, schedules, other functions).
func TestNonAPIChangesKeepDeploymentID(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	baseID := parseTemplate(t, b).WantDeploymentID()
	edits := map[string][2]string{
		"comment":        {"  WakeMethod:\n", "  # a comment\n  WakeMethod:\n"},
		"quoting":        {"      PathPart: wake\n", "      PathPart: \"wake\"\n"},
		"key order":      {"      AuthorizationType: NONE\n      ApiKeyRequired: true\n", "      ApiKeyRequired: true\n      AuthorizationType: NONE\n"},
		"stage setting":  {"          ThrottlingRateLimit: !Ref ThrottleRateLimit\n", "          ThrottlingRateLimit: 5\n"},
		"sleep function": {"      Description: Fluidity Sleep (idle policy, every few minutes)\n", "      Description: Sleep\n"},
	}
	for name, e := range edits {
		s := string(b)
		if !strings.Contains(s, e[0]) {
			t.Fatalf("%s: %q not in the template", name, e[0])
		}
		s = strings.Replace(s, e[0], e[1], 1)
		tpl, err := infra.ParseTemplate([]byte(s))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, s)
		}
		if got := tpl.WantDeploymentID(); got != baseID {
			t.Errorf("%s changes the Deployment ID (%s → %s)", name, baseID, got)
		}
	}
}

// Stamping renames the Deployment and every reference to it, nothing else.
func TestStampDeployment(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("control-plane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	oldID, _ := parseTemplate(t, b).DeploymentID()
	changed := bytes.Replace(b, []byte("      HttpMethod: POST\n"), []byte("      HttpMethod: PUT\n"), 1)
	out, err := infra.StampDeployment(changed)
	if err != nil {
		t.Fatal(err)
	}
	tpl := parseTemplate(t, out)
	newID, _ := tpl.DeploymentID()
	if newID == oldID || newID != tpl.WantDeploymentID() {
		t.Fatalf("stamped ID %s (was %s, want %s)", newID, oldID, tpl.WantDeploymentID())
	}
	if bytes.Contains(out, []byte(oldID)) {
		t.Errorf("the old ID %s is still in the stamped template", oldID)
	}
	if !bytes.Contains(out, []byte("DeploymentId: !Ref "+newID+"\n")) {
		t.Error("the Stage does not refer to the new Deployment")
	}
	if want := bytes.ReplaceAll(changed, []byte(oldID), []byte(newID)); !bytes.Equal(out, want) {
		t.Error("stamping changed more than the Deployment's ID")
	}
	if _, err := infra.StampDeployment([]byte("Resources:\n  A:\n    Type: AWS::SNS::Topic\n")); err == nil {
		t.Error("a template without a Deployment stamped without error")
	}
}

// References finds Ref, GetAtt and Sub in short and long form, and DependsOn.
func TestReferences(t *testing.T) {
	t.Parallel()
	src := `
A: !Ref P
B: !GetAtt R1.Arn
C: !GetAtt [R2, Arn]
D: !Sub "x${R3.Arn}y${AWS::Region}${!Literal}"
E: !Sub ["${Local}${R4}", {Local: !Ref R5}]
F: {Ref: R6}
G: {"Fn::GetAtt": [R7, Arn]}
H: {"Fn::Sub": "${R8}"}
DependsOn: [R9]
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	want := []string{"P", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9"}
	if got := infra.References(n.Content[0]); !slices.Equal(got, want) {
		t.Errorf("References = %v, want %v", got, want)
	}
}

func nodeValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// scalars lists every scalar node under n, mapping keys included.
func scalars(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.ScalarNode {
		return []*yaml.Node{n}
	}
	var out []*yaml.Node
	for _, c := range n.Content {
		out = append(out, scalars(c)...)
	}
	return out
}

// removeResource drops one resource (and the DependsOn entry naming it).
func removeResource(t *testing.T, b []byte, id string) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	res := nodeValue(doc.Content[0], "Resources")
	for i := 0; i+1 < len(res.Content); i += 2 {
		if res.Content[i].Value == id {
			res.Content = append(res.Content[:i], res.Content[i+2:]...)
			break
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
