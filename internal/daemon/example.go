package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

// ExampleYAML renders an example configuration file for cfg, a config struct
// holding the defaults: every key with its meaning, commented out at its
// default, except the keys in set, written with the given values (YAML
// scalars as they would be typed). With all, every key is written, which is
// how tests check that the file loads back to the defaults. Nested keys
// (lifecycle.api_key) are nested under their section.
func ExampleYAML(cfg any, title string, set map[string]string, all bool) string {
	var b strings.Builder
	b.WriteString("# " + title + "\n")
	b.WriteString("# Every key, with its meaning, at its default. Uncomment a key to change it.\n")
	b.WriteString("# Precedence: flags > environment variables > this file > defaults.\n")
	section := ""
	for _, e := range config.Reference(cfg) {
		key, indent := e.Key, ""
		if i := strings.LastIndex(e.Key, "."); i >= 0 {
			sec := e.Key[:i]
			key, indent = e.Key[i+1:], strings.Repeat("  ", strings.Count(sec, ".")+1)
			if sec != section {
				fmt.Fprintf(&b, "\n%s:\n", sec)
				section = sec
			}
		}
		b.WriteString("\n")
		for _, line := range wrap(e.Help, 88-len(indent)) {
			fmt.Fprintf(&b, "%s# %s\n", indent, line)
		}
		value, isSet := set[e.Key]
		if !isSet {
			value = yamlScalar(e)
		}
		comment := "# "
		if isSet || all {
			comment = ""
		}
		if value == "" {
			fmt.Fprintf(&b, "%s%s%s:\n", indent, comment, key)
		} else {
			fmt.Fprintf(&b, "%s%s%s: %s\n", indent, comment, key, value)
		}
	}
	return b.String()
}

// yamlScalar is e's default as YAML: strings quoted (JSON's quoting is YAML's
// double-quoted style), an empty value left null, which keeps the default.
func yamlScalar(e config.Entry) string {
	if e.Default == "" {
		return ""
	}
	switch e.Type {
	case "string", "list of strings":
		q, _ := json.Marshal(e.Default)
		return string(q)
	}
	return e.Default
}

// wrap breaks s into lines of at most width bytes at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// CheckExample keeps the example file at path generated (rewriting it with
// update) and checks that it loads, as written and with every key uncommented,
// to want: the defaults that fresh returns (a new pointer each call) with the
// keys in set. It returns the first difference.
func CheckExample(path, title string, set map[string]string, fresh func() any, want any, update bool) error {
	text := ExampleYAML(fresh(), title, set, false)
	if update {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil { // #nosec G306 -- a public example file in the repository
			return err
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if string(data) != text {
		return fmt.Errorf("%s is out of date; run: go test ./daemons/... -run Example -update-golden", path)
	}
	for _, all := range []bool{false, true} {
		got := fresh()
		if err := loadExample(ExampleYAML(fresh(), title, set, all), got); err != nil {
			return fmt.Errorf("%s (every key written: %v): %w", path, all, err)
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("%s (every key written: %v) loads as\n%+v\nwant\n%+v", path, all, got, want)
		}
	}
	return nil
}

// loadExample loads an example file's text into cfg as --config would, and
// validates it.
func loadExample(text string, cfg any) error {
	f, err := os.CreateTemp("", "example-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := config.Load(cfg, config.Options{File: f.Name()}); err != nil {
		return err
	}
	if v, ok := cfg.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}
