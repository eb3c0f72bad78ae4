// Package config loads the Fluidity daemons' settings into plain structs.
//
// A daemon describes its settings as a struct whose fields carry a `koanf`
// tag (the YAML key) and a `help` tag (one line of documentation). Nested
// structs become nested YAML sections. From that one description the package
// derives command-line flags, environment variable names, a reference table
// for the README, and a loader that layers, from lowest to highest
// precedence: the struct's current values (the defaults), a YAML file,
// environment variables, and flags set explicitly on the command line.
//
// Supported field types: string, bool, every int and uint size, float32,
// float64, time.Duration and []string (named types with those underlying
// kinds work too). A struct field with no koanf tag is a programming error
// unless it is tagged `koanf:"-"` (skipped) or is an embedded struct, whose
// fields are then treated as the parent's.
package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// Options says where Load looks for settings beyond the defaults.
type Options struct {
	// File is a YAML file to read. Empty means none; a named file that does
	// not exist is an error (a mistyped path must not silently fall back to
	// defaults).
	File string
	// EnvPrefix is prepended to every environment variable name, e.g.
	// "FLUIDITY_AGENT_" gives FLUIDITY_AGENT_SERVER_PORT.
	EnvPrefix string
	// Environ is the environment in os.Environ form. Nil means the
	// environment is not consulted; the package never reads the process
	// environment itself, which keeps tests hermetic. A variable that
	// carries the prefix but names no setting is an error, as an unknown
	// YAML key is: a mistyped name must not silently leave the default.
	Environ []string
	// Flags is the parsed flag set, normally populated by RegisterFlags.
	// Only flags the user actually set take part; flags unknown to the
	// config struct (e.g. --config) are ignored. Nil means no flags.
	Flags *pflag.FlagSet
}

// FieldError reports a problem with one setting. Load returns it for bad
// values and unknown keys; daemons' Validate methods should return it too,
// so every configuration error names the key the user has to fix.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return "config: " + e.Key + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Entry documents one setting, e.g. for the README's configuration table.
type Entry struct {
	Key     string // YAML key, dotted for nested sections: "lifecycle.api_endpoint"
	Env     string // environment variable name without the prefix: "LIFECYCLE__API_ENDPOINT"
	Flag    string // command-line flag including dashes: "--lifecycle-api-endpoint"
	Type    string // "string", "int", "duration", "list of strings", ...
	Default string // the default, formatted as it would be typed
	Help    string // the field's help tag
}

// FlagName returns the flag name (without dashes) for a key: underscores and
// section separators both become dashes.
func FlagName(key string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(key)
}

// EnvName returns the environment variable name (without the prefix) for a
// key: upper case, with sections joined by a double underscore because a
// single one already occurs inside key names.
func EnvName(key string) string {
	return strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// RegisterFlags defines one flag per setting in defaults (a struct or a
// pointer to one), typed after the field, documented by its help tag and
// showing the field's current value as the default. It panics if the struct
// cannot be described, as that is a programming error.
func RegisterFlags(fs *pflag.FlagSet, defaults any) {
	v, err := structValue(defaults)
	if err != nil {
		panic(err)
	}
	fields, err := describe(v.Type())
	if err != nil {
		panic(err)
	}
	for _, f := range fields {
		registerFlag(fs, f, v.FieldByIndex(f.index))
	}
}

func registerFlag(fs *pflag.FlagSet, f field, v reflect.Value) {
	name, usage := FlagName(f.key), f.help
	if f.typ == durationType {
		fs.Duration(name, time.Duration(v.Int()), usage)
		return
	}
	switch f.typ.Kind() {
	case reflect.String:
		fs.String(name, v.String(), usage)
	case reflect.Bool:
		fs.Bool(name, v.Bool(), usage)
	case reflect.Int:
		fs.Int(name, int(v.Int()), usage)
	case reflect.Int8:
		fs.Int8(name, int8(v.Int()), usage) // #nosec G115 -- v's kind is Int8: its value fits
	case reflect.Int16:
		fs.Int16(name, int16(v.Int()), usage) // #nosec G115 -- v's kind is Int16: its value fits
	case reflect.Int32:
		fs.Int32(name, int32(v.Int()), usage) // #nosec G115 -- v's kind is Int32: its value fits
	case reflect.Int64:
		fs.Int64(name, v.Int(), usage)
	case reflect.Uint:
		fs.Uint(name, uint(v.Uint()), usage)
	case reflect.Uint8:
		fs.Uint8(name, uint8(v.Uint()), usage) // #nosec G115 -- v's kind is Uint8: its value fits
	case reflect.Uint16:
		fs.Uint16(name, uint16(v.Uint()), usage) // #nosec G115 -- v's kind is Uint16: its value fits
	case reflect.Uint32:
		fs.Uint32(name, uint32(v.Uint()), usage) // #nosec G115 -- v's kind is Uint32: its value fits
	case reflect.Uint64:
		fs.Uint64(name, v.Uint(), usage)
	case reflect.Float32:
		fs.Float32(name, float32(v.Float()), usage)
	case reflect.Float64:
		fs.Float64(name, v.Float(), usage)
	case reflect.Slice:
		fs.StringSlice(name, stringSlice(v), usage)
	default:
		// describe() admits only the kinds above.
		panic(fmt.Sprintf("config: %s: unsupported type %s", f.key, f.typ))
	}
}

// Reference lists every setting of defaults (a struct or a pointer to one)
// in declaration order. It panics if the struct cannot be described.
func Reference(defaults any) []Entry {
	v, err := structValue(defaults)
	if err != nil {
		panic(err)
	}
	fields, err := describe(v.Type())
	if err != nil {
		panic(err)
	}
	entries := make([]Entry, 0, len(fields))
	for _, f := range fields {
		entries = append(entries, Entry{
			Key:     f.key,
			Env:     EnvName(f.key),
			Flag:    "--" + FlagName(f.key),
			Type:    typeName(f.typ),
			Default: format(v.FieldByIndex(f.index)),
			Help:    f.help,
		})
	}
	return entries
}

// Load fills dst, a pointer to a config struct whose current values are the
// defaults, from the sources in opts. Precedence, lowest first: defaults,
// opts.File, opts.Environ, explicitly set opts.Flags.
//
// Durations use Go syntax ("90s", "1m30s"). A []string comes from a YAML
// list, or from a comma-separated string in the environment or YAML. A YAML
// key left empty (null) keeps its default. Unknown YAML keys and values of
// the wrong type are reported as a *FieldError naming the key and where the
// bad value came from. On error dst is left unchanged.
func Load(dst any, opts Options) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: load needs a non-nil pointer to a struct, got %T", dst)
	}
	fields, err := describe(rv.Elem().Type())
	if err != nil {
		return err
	}
	s := newSchema(fields)

	ko := koanf.New(".")
	if opts.File != "" {
		layer := koanf.New(".")
		if err := layer.Load(file.Provider(opts.File), yaml.Parser()); err != nil {
			return fmt.Errorf("config: read %s: %w", opts.File, err)
		}
		if err := s.check(layer, func(string) string { return "in " + opts.File }); err != nil {
			return err
		}
		if err := ko.Merge(layer); err != nil {
			return fmt.Errorf("config: merge %s: %w", opts.File, err)
		}
	}
	if opts.Environ != nil {
		varOf := map[string]string{} // key -> variable that set it
		var unknown []string
		layer := koanf.New(".")
		err := layer.Load(env.Provider(".", env.Opt{
			Prefix:      opts.EnvPrefix,
			EnvironFunc: func() []string { return opts.Environ },
			TransformFunc: func(name, value string) (string, any) {
				key, ok := s.byEnv[strings.TrimPrefix(name, opts.EnvPrefix)]
				if !ok {
					unknown = append(unknown, name)
					return "", nil
				}
				varOf[key] = name
				return key, value
			},
		}), nil)
		if err != nil {
			return fmt.Errorf("config: read environment: %w", err)
		}
		if len(unknown) > 0 {
			return s.unknownEnv(unknown, opts.EnvPrefix)
		}
		if err := s.check(layer, func(key string) string { return "from " + varOf[key] }); err != nil {
			return err
		}
		if err := ko.Merge(layer); err != nil {
			return fmt.Errorf("config: merge environment: %w", err)
		}
	}
	if opts.Flags != nil {
		layer := koanf.New(".")
		err := layer.Load(posflag.ProviderWithFlag(opts.Flags, ".", nil, func(f *pflag.Flag) (string, any) {
			key, ok := s.byFlag[f.Name]
			if !ok || !f.Changed {
				// Unset flags only carry defaults, which must not mask the
				// file or the environment.
				return "", nil
			}
			return key, posflag.FlagVal(opts.Flags, f)
		}), nil)
		if err != nil {
			return fmt.Errorf("config: read flags: %w", err)
		}
		if err := s.check(layer, func(key string) string { return "from --" + FlagName(key) }); err != nil {
			return err
		}
		if err := ko.Merge(layer); err != nil {
			return fmt.Errorf("config: merge flags: %w", err)
		}
	}

	// Build the result on a copy so that a failure leaves dst untouched.
	out := reflect.New(rv.Elem().Type()).Elem()
	out.Set(rv.Elem())
	for _, f := range fields {
		raw := ko.Get(f.key)
		if raw == nil {
			continue
		}
		val, err := convert(raw, f.typ)
		if err != nil {
			// Every layer was checked above; this is a safety net.
			return &FieldError{Key: f.key, Err: err}
		}
		out.FieldByIndex(f.index).Set(val)
	}
	rv.Elem().Set(out)
	return nil
}

// field is one leaf setting of a config struct.
type field struct {
	key   string
	index []int
	typ   reflect.Type
	help  string
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	keyPattern   = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)
)

func structValue(x any) (reflect.Value, error) {
	v := reflect.ValueOf(x)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, fmt.Errorf("config: want a struct or a pointer to one, got %T", x)
	}
	return v, nil
}

// describe lists the leaf settings of struct type t in declaration order.
func describe(t reflect.Type) ([]field, error) {
	var fields []field
	if err := walk(t, "", nil, &fields); err != nil {
		return nil, err
	}
	flags := map[string]string{}
	for _, f := range fields {
		name := FlagName(f.key)
		if other, dup := flags[name]; dup {
			return nil, fmt.Errorf("config: keys %q and %q both map to flag --%s", other, f.key, name)
		}
		flags[name] = f.key
	}
	return fields, nil
}

func walk(t reflect.Type, prefix string, index []int, out *[]field) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		name, _, _ := strings.Cut(sf.Tag.Get("koanf"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
				if err := walk(sf.Type, prefix, idx, out); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("config: field %s.%s has no koanf tag", t.Name(), sf.Name)
		}
		if !keyPattern.MatchString(name) {
			return fmt.Errorf("config: field %s.%s: key %q must be lower_snake_case", t.Name(), sf.Name, name)
		}
		key := prefix + name
		switch {
		case supported(sf.Type):
			*out = append(*out, field{key: key, index: idx, typ: sf.Type, help: sf.Tag.Get("help")})
		case sf.Type.Kind() == reflect.Struct:
			if err := walk(sf.Type, key+".", idx, out); err != nil {
				return err
			}
		default:
			return fmt.Errorf("config: field %s.%s (%s): unsupported type %s", t.Name(), sf.Name, key, sf.Type)
		}
	}
	return nil
}

func supported(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// schema indexes the settings for checking a source layer.
type schema struct {
	byKey    map[string]field
	byEnv    map[string]string // env name without prefix -> key
	byFlag   map[string]string // flag name -> key
	sections map[string]bool   // "lifecycle" for lifecycle.api_endpoint
	keys     []string
}

func newSchema(fields []field) *schema {
	s := &schema{
		byKey:    map[string]field{},
		byEnv:    map[string]string{},
		byFlag:   map[string]string{},
		sections: map[string]bool{},
	}
	for _, f := range fields {
		s.byKey[f.key] = f
		s.byEnv[EnvName(f.key)] = f.key
		s.byFlag[FlagName(f.key)] = f.key
		s.keys = append(s.keys, f.key)
		for p := parent(f.key); p != ""; p = parent(p) {
			s.sections[p] = true
		}
	}
	return s
}

// check validates every value in one source layer, reporting the first
// problem in key order so the error is deterministic. source describes
// where a key's value came from, for the error message.
func (s *schema) check(layer *koanf.Koanf, source func(key string) string) error {
	flat := layer.All()
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := flat[k]
		if f, ok := s.byKey[k]; ok {
			if raw == nil {
				continue
			}
			if _, err := convert(raw, f.typ); err != nil {
				return &FieldError{Key: k, Err: fmt.Errorf("%w (%s)", err, source(k))}
			}
			continue
		}
		if s.sections[k] {
			if m, isMap := raw.(map[string]any); raw == nil || isMap && len(m) == 0 {
				continue
			}
			return &FieldError{Key: k, Err: fmt.Errorf("is a section and needs nested keys, got %s (%s)", describeValue(raw), source(k))}
		}
		for p := parent(k); p != ""; p = parent(p) {
			if f, ok := s.byKey[p]; ok {
				return &FieldError{Key: p, Err: fmt.Errorf("expected %s, got a mapping (%s)", typeName(f.typ), source(k))}
			}
		}
		msg := "unknown key (" + source(k) + ")"
		if guess := closest(k, s.keys); guess != "" {
			msg += fmt.Sprintf("; did you mean %q?", guess)
		}
		return &FieldError{Key: k, Err: errors.New(msg)}
	}
	return nil
}

// unknownEnv reports the first (in name order) of the variables that carry
// the prefix but name no setting, with the nearest name that does.
func (s *schema) unknownEnv(names []string, prefix string) error {
	sort.Strings(names)
	name := names[0]
	known := make([]string, 0, len(s.byEnv))
	for env := range s.byEnv {
		known = append(known, env)
	}
	sort.Strings(known) // closest keeps the first of equally near names
	msg := "unknown variable: no setting has this name"
	if guess := closest(strings.ToUpper(strings.TrimPrefix(name, prefix)), known); guess != "" {
		msg += fmt.Sprintf("; did you mean %s%s?", prefix, guess)
	}
	if len(names) > 1 {
		msg += fmt.Sprintf(" (and %d more unknown: %s)", len(names)-1, strings.Join(names[1:], ", "))
	}
	return &FieldError{Key: name, Err: errors.New(msg)}
}

func parent(key string) string {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return ""
	}
	return key[:i]
}

// closest suggests the known key nearest to an unknown one, if any is close
// enough to be a plausible typo.
func closest(key string, known []string) string {
	best, bestDist := "", max(2, len(key)/4)+1
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
