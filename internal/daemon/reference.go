package daemon

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// ReferenceTable renders the README's configuration table for cfg, a config struct
// holding the defaults, so the documentation is generated from the code it documents.
func ReferenceTable(cfg any, envPrefix string) string {
	var b strings.Builder
	b.WriteString("| key | default | environment / flag | meaning |\n| --- | --- | --- | --- |\n")
	for _, e := range config.Reference(cfg) {
		def := ""
		if e.Default != "" {
			def = "`" + e.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s%s` / `%s` | %s |\n", e.Key, def, envPrefix, e.Env, e.Flag, e.Help)
	}
	return b.String()
}

// SyncREADME checks that the block between "<!-- begin NAME -->" and
// "<!-- end NAME -->" in the file at path is content; with update it rewrites the
// block instead. Tests call it so that a stale README fails the build.
func SyncREADME(path, name, content string, update bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin, end := []byte("<!-- begin "+name+" -->\n"), []byte("<!-- end "+name+" -->")
	i, j := bytes.Index(data, begin), bytes.Index(data, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: markers for %q not found", path, name)
	}
	current := string(data[i+len(begin) : j])
	if current == content {
		return nil
	}
	if !update {
		return fmt.Errorf("%s: the %q table is out of date; run: go test ./daemons/... -run TestREADME -update", path, name)
	}
	out := append(append(append([]byte{}, data[:i+len(begin)]...), content...), data[j:]...)
	return os.WriteFile(path, out, 0o644) // #nosec G306 G703 -- the README is a public document
}
