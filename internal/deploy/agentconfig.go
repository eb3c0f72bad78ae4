package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// WriteAgentConfig sets lifecycle.api_endpoint and lifecycle.api_key in the
// agent's YAML configuration at path, keeping every other key and comment. A
// missing file is created with the certificate paths of certDir as well. The
// file holds the key, so it is written with mode 0600.
func WriteAgentConfig(path string, res Result, certDir string) error {
	if res.APIEndpoint == "" || res.APIKey == "" {
		return errors.New("agent config: no API endpoint or key to write")
	}
	var doc yaml.Node
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		abs, err := filepath.Abs(certDir)
		if err != nil {
			return err
		}
		fresh := fmt.Sprintf("cert_file: %q\nkey_file: %q\nca_cert_file: %q\n",
			filepath.Join(abs, "agent.crt"), filepath.Join(abs, "agent.key"), filepath.Join(abs, "ca.crt"))
		if err := yaml.Unmarshal([]byte(fresh), &doc); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("agent config: %w", err)
	default:
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("agent config %s: %w", path, err)
		}
		if len(doc.Content) == 0 { // an empty file
			doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
		}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("agent config %s: not a mapping of keys", path)
	}
	lc := mapValue(root, "lifecycle", yaml.MappingNode)
	if lc.Kind != yaml.MappingNode {
		return fmt.Errorf("agent config %s: lifecycle is not a mapping", path)
	}
	setScalar(lc, "api_endpoint", res.APIEndpoint)
	setScalar(lc, "api_key", res.APIKey)

	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".agent-*.yaml")
	if err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// mapValue returns the value node of key in m, adding it (of kind) if absent.
func mapValue(m *yaml.Node, key string, kind yaml.Kind) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	v := &yaml.Node{Kind: kind}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	return v
}

func setScalar(m *yaml.Node, key, value string) {
	v := mapValue(m, key, yaml.ScalarNode)
	*v = yaml.Node{Kind: yaml.ScalarNode, Value: value, Style: yaml.DoubleQuotedStyle, LineComment: v.LineComment}
}
