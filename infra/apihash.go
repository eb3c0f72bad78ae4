package infra

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// API Gateway serves a REST API's stage from a Deployment, a snapshot of the
// API taken when the Deployment is created. CloudFormation never re-creates an
// AWS::ApiGateway::Deployment whose properties did not change, so a stack
// update that changes a method or an integration would leave the stage serving
// the old snapshot. The usual cure (SAM and CDK do the same) is to put a hash
// of the API definition in the Deployment's logical ID: any change to the API
// gives the Deployment a new ID, CloudFormation creates the new Deployment,
// points the Stage at it, and deletes the old one.
//
// A CloudFormation template cannot compute that hash itself, and a parameter
// set by the deploy step would be one more thing a user can forget. So the
// hash is written into control-plane.yaml by `go generate ./infra` (which runs
// StampDeployment), and a test fails when the committed logical ID is not the
// hash of the committed API: the template stays deployable as it is with plain
// `aws cloudformation deploy`.

// DeploymentIDPrefix starts the Deployment's logical ID; the hash follows.
const DeploymentIDPrefix = "ApiDeployment"

// apiTypes are the resource types that make up what a Deployment snapshots.
// Stages, keys, usage plans and permissions are outside the snapshot.
var apiTypes = map[string]bool{
	"AWS::ApiGateway::RestApi":          true,
	"AWS::ApiGateway::Resource":         true,
	"AWS::ApiGateway::Method":           true,
	"AWS::ApiGateway::Model":            true,
	"AWS::ApiGateway::RequestValidator": true,
	"AWS::ApiGateway::Authorizer":       true,
	"AWS::ApiGateway::GatewayResponse":  true,
}

// Template is a parsed CloudFormation template, kept as YAML nodes so that
// short-form tags (!Ref, !Sub, …) survive.
type Template struct {
	raw       []byte
	resources map[string]*yaml.Node // logical ID → resource body
	types     map[string]string     // logical ID → type
}

// ParseTemplate parses a YAML template.
func ParseTemplate(b []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("template is not a YAML mapping")
	}
	t := &Template{raw: b, resources: map[string]*yaml.Node{}, types: map[string]string{}}
	res := mapValue(doc.Content[0], "Resources")
	if res == nil || res.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("template has no Resources mapping")
	}
	for i := 0; i+1 < len(res.Content); i += 2 {
		id, body := res.Content[i].Value, res.Content[i+1]
		t.resources[id] = body
		if typ := mapValue(body, "Type"); typ != nil {
			t.types[id] = typ.Value
		}
	}
	return t, nil
}

// APIResources returns the logical IDs of the resources the hash covers: every
// API-definition resource, and every resource one of them refers to (so that,
// say, renaming a Lambda function changes the integration URI's hash too).
func (t *Template) APIResources() []string {
	set := map[string]bool{}
	for id, typ := range t.types {
		if !apiTypes[typ] {
			continue
		}
		set[id] = true
		for _, ref := range References(t.resources[id]) {
			if _, ok := t.resources[ref]; ok {
				set[ref] = true
			}
		}
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// APIHash is the hash of the API definition: the canonical form of every
// resource APIResources lists, with its logical ID. Comments, key order,
// quoting and block or flow style do not change it; any other change does.
func (t *Template) APIHash() string {
	h := sha256.New()
	for _, id := range t.APIResources() {
		fmt.Fprintf(h, "%q=", id)
		canonical(h, t.resources[id])
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// DeploymentID returns the logical ID of the template's only
// AWS::ApiGateway::Deployment.
func (t *Template) DeploymentID() (string, error) {
	var ids []string
	for id, typ := range t.types {
		if typ == "AWS::ApiGateway::Deployment" {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("template has %d AWS::ApiGateway::Deployment resources (%v), want 1", len(ids), ids)
	}
	return ids[0], nil
}

// WantDeploymentID is the logical ID the Deployment must have.
func (t *Template) WantDeploymentID() string { return DeploymentIDPrefix + t.APIHash() }

// StampDeployment renames the template's Deployment to WantDeploymentID and
// rewrites every reference to it (Ref, GetAtt, Sub, DependsOn) in the text,
// leaving the rest of the file byte for byte as it was.
func StampDeployment(b []byte) ([]byte, error) {
	t, err := ParseTemplate(b)
	if err != nil {
		return nil, err
	}
	old, err := t.DeploymentID()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(old, DeploymentIDPrefix) {
		return nil, fmt.Errorf("deployment %s: logical ID must start with %s", old, DeploymentIDPrefix)
	}
	want := t.WantDeploymentID()
	if old == want {
		return b, nil
	}
	// Logical IDs are alphanumeric, so a word boundary ends one.
	out := regexp.MustCompile(`\b`+regexp.QuoteMeta(old)+`\b`).ReplaceAll(b, []byte(want))
	check, err := ParseTemplate(out)
	if err != nil {
		return nil, fmt.Errorf("stamped template: %w", err)
	}
	got, err := check.DeploymentID()
	if err != nil {
		return nil, fmt.Errorf("stamping %s → %s: %w", old, want, err)
	}
	if got != want || check.APIHash() != t.APIHash() {
		return nil, fmt.Errorf("stamping %s → %s changed more than the Deployment's ID (got %s)", old, want, got)
	}
	return out, nil
}

// References lists the logical IDs (and parameter names) a node refers to
// through Ref, Fn::GetAtt, Fn::Sub and DependsOn, short or long form.
// Pseudo parameters (AWS::…) are left out.
func References(n *yaml.Node) []string {
	set := map[string]bool{}
	var walk func(n *yaml.Node)
	add := func(s string) {
		if s != "" && !strings.HasPrefix(s, "AWS::") {
			set[s] = true
		}
	}
	sub := func(s string, local map[string]bool) {
		for _, m := range subVar.FindAllStringSubmatch(s, -1) {
			name, _, _ := strings.Cut(m[1], ".")
			if !local[name] {
				add(name)
			}
		}
	}
	subNode := func(n *yaml.Node) {
		switch {
		case n.Kind == yaml.ScalarNode:
			sub(n.Value, nil)
		case n.Kind == yaml.SequenceNode && len(n.Content) == 2:
			local := map[string]bool{}
			vars := n.Content[1]
			for i := 0; i+1 < len(vars.Content); i += 2 {
				local[vars.Content[i].Value] = true
				walk(vars.Content[i+1])
			}
			sub(n.Content[0].Value, local)
		}
	}
	getAtt := func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			id, _, _ := strings.Cut(n.Value, ".")
			add(id)
		} else if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
			add(n.Content[0].Value)
		}
	}
	walk = func(n *yaml.Node) {
		switch n.Tag {
		case "!Ref":
			add(n.Value)
			return
		case "!GetAtt":
			getAtt(n)
			return
		case "!Sub":
			subNode(n)
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				switch k {
				case "Ref":
					add(v.Value)
					continue
				case "Fn::GetAtt":
					getAtt(v)
					continue
				case "Fn::Sub":
					subNode(v)
					continue
				case "DependsOn":
					if v.Kind == yaml.ScalarNode {
						add(v.Value)
					} else {
						for _, d := range v.Content {
							add(d.Value)
						}
					}
					continue
				}
				walk(v)
			}
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// subVar matches ${Name} and ${Name.Attr} in a Fn::Sub string, not ${!Literal}.
var subVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// canonical writes a node's meaning: tags kept, mappings sorted by key,
// scalars quoted, comments and styles dropped.
func canonical(w interface{ Write([]byte) (int, error) }, n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			canonical(w, c)
		}
	case yaml.AliasNode:
		canonical(w, n.Alias)
	case yaml.ScalarNode:
		fmt.Fprintf(w, "%s%s", tagOf(n), strconv.Quote(n.Value))
	case yaml.SequenceNode:
		fmt.Fprintf(w, "%s[", tagOf(n))
		for _, c := range n.Content {
			canonical(w, c)
			_, _ = w.Write([]byte{','})
		}
		_, _ = w.Write([]byte{']'})
	case yaml.MappingNode:
		type kv struct {
			k string
			v *yaml.Node
		}
		var kvs []kv
		for i := 0; i+1 < len(n.Content); i += 2 {
			kvs = append(kvs, kv{n.Content[i].Value, n.Content[i+1]})
		}
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
		fmt.Fprintf(w, "%s{", tagOf(n))
		for _, e := range kvs {
			fmt.Fprintf(w, "%s:", strconv.Quote(e.k))
			canonical(w, e.v)
			_, _ = w.Write([]byte{','})
		}
		_, _ = w.Write([]byte{'}'})
	}
}

// tagOf is a node's explicit CloudFormation tag (!Ref, !Sub, …), or nothing:
// YAML's own resolved tags (!!str, !!int) are dropped, so that "2" and 2 hash
// alike, as CloudFormation reads them alike.
func tagOf(n *yaml.Node) string {
	if t := n.Tag; strings.HasPrefix(t, "!") && !strings.HasPrefix(t, "!!") {
		return t
	}
	return ""
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
