package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type Common struct {
	LogLevel string `koanf:"log_level" help:"log level"`
}

type testConfig struct {
	ServerIP        string        `koanf:"server_ip" help:"address of the server"`
	ServerPort      int           `koanf:"server_port" help:"TCP port of the server"`
	Verbose         bool          `koanf:"verbose" help:"log more"`
	Ratio           float64       `koanf:"ratio" help:"a ratio"`
	MaxConnections  uint32        `koanf:"max_connections" help:"connection cap"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" help:"grace period"`
	AllowCIDRs      []string      `koanf:"allow_cidrs" help:"networks to allow"`
	Lifecycle       struct {
		APIEndpoint string        `koanf:"api_endpoint" help:"wake/kill API"`
		Timeout     time.Duration `koanf:"timeout" help:"API timeout"`
	} `koanf:"lifecycle"`
	Common
	Ignored  string `koanf:"-"`
	internal int
}

func defaults() testConfig {
	var c testConfig
	c.ServerIP = "127.0.0.1"
	c.ServerPort = 8443
	c.Ratio = 0.5
	c.MaxConnections = 100
	c.ShutdownTimeout = 10 * time.Second
	c.AllowCIDRs = []string{"10.0.0.0/8"}
	c.Lifecycle.APIEndpoint = "https://default.example"
	c.Lifecycle.Timeout = 5 * time.Second
	c.LogLevel = "info"
	c.Ignored = "keep"
	c.internal = 7
	return c
}

const prefix = "FLUIDITY_TEST_"

type sources struct {
	yaml  string   // file contents; "" means no file
	env   []string // KEY=VALUE without the prefix
	flags []string // command-line arguments
}

// load runs Load over defaults() with the given sources.
func load(t *testing.T, src sources) (testConfig, error) {
	t.Helper()
	cfg := defaults()
	opts := Options{EnvPrefix: prefix, Environ: []string{"PATH=/bin", "FLUIDITY_OTHER_SERVER_PORT=1"}}
	if src.yaml != "" {
		opts.File = filepath.Join(t.TempDir(), "test.yaml")
		if err := os.WriteFile(opts.File, []byte(src.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range src.env {
		opts.Environ = append(opts.Environ, prefix+kv)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "not a setting")
	RegisterFlags(fs, defaults())
	if err := fs.Parse(src.flags); err != nil {
		t.Fatalf("parse flags: %v", err)
	}
	opts.Flags = fs
	err := Load(&cfg, opts)
	return cfg, err
}

func TestPrecedence(t *testing.T) {
	const (
		fileYAML = "server_port: 1001\nlifecycle:\n  api_endpoint: https://file.example\n"
	)
	env := []string{"SERVER_PORT=1002", "LIFECYCLE__API_ENDPOINT=https://env.example"}
	flags := []string{"--server-port=1003", "--lifecycle-api-endpoint", "https://flag.example"}

	tests := []struct {
		name         string
		src          sources
		wantPort     int
		wantEndpoint string
	}{
		{"defaults only", sources{}, 8443, "https://default.example"},
		{"file beats default", sources{yaml: fileYAML}, 1001, "https://file.example"},
		{"env beats default", sources{env: env}, 1002, "https://env.example"},
		{"flag beats default", sources{flags: flags}, 1003, "https://flag.example"},
		{"env beats file", sources{yaml: fileYAML, env: env}, 1002, "https://env.example"},
		{"flag beats file", sources{yaml: fileYAML, flags: flags}, 1003, "https://flag.example"},
		{"flag beats env", sources{env: env, flags: flags}, 1003, "https://flag.example"},
		{"flag beats everything", sources{yaml: fileYAML, env: env, flags: flags}, 1003, "https://flag.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ServerPort != tt.wantPort {
				t.Errorf("server_port = %d, want %d", cfg.ServerPort, tt.wantPort)
			}
			if cfg.Lifecycle.APIEndpoint != tt.wantEndpoint {
				t.Errorf("lifecycle.api_endpoint = %q, want %q", cfg.Lifecycle.APIEndpoint, tt.wantEndpoint)
			}
			// Settings no source mentions keep their defaults.
			d := defaults()
			if cfg.ServerIP != d.ServerIP || cfg.Lifecycle.Timeout != d.Lifecycle.Timeout || cfg.Ignored != "keep" || cfg.internal != 7 {
				t.Errorf("untouched settings changed: %+v", cfg)
			}
		})
	}
}

func TestUnsetFlagsDoNotOverride(t *testing.T) {
	// The flags carry defaults (8443, info) that differ from the file and the
	// environment; because the user did not type them they must not win.
	cfg, err := load(t, sources{
		yaml:  "server_port: 1001\nverbose: true\n",
		env:   []string{"LOG_LEVEL=debug"},
		flags: []string{"--server-ip=192.0.2.1", "--config=x.yaml"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerPort != 1001 || !cfg.Verbose || cfg.LogLevel != "debug" || cfg.ServerIP != "192.0.2.1" {
		t.Errorf("got port=%d verbose=%v log_level=%q server_ip=%q; want 1001 true debug 192.0.2.1",
			cfg.ServerPort, cfg.Verbose, cfg.LogLevel, cfg.ServerIP)
	}
}

func TestFlagSetToDefaultValueStillWins(t *testing.T) {
	cfg, err := load(t, sources{yaml: "server_port: 1001\n", flags: []string{"--server-port=8443"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerPort != 8443 {
		t.Errorf("server_port = %d, want the explicitly typed 8443", cfg.ServerPort)
	}
}

func TestAllTypes(t *testing.T) {
	tests := []struct {
		name  string
		src   sources
		check func(testConfig) bool
	}{
		{"yaml scalars", sources{yaml: "server_ip: tunnel.example\nverbose: true\nratio: 0.25\nmax_connections: 7\nlog_level: warn\n"},
			func(c testConfig) bool {
				return c.ServerIP == "tunnel.example" && c.Verbose && c.Ratio == 0.25 && c.MaxConnections == 7 && c.LogLevel == "warn"
			}},
		{"env scalars", sources{env: []string{"VERBOSE=true", "RATIO=2", "MAX_CONNECTIONS=9", "SERVER_IP=a.example"}},
			func(c testConfig) bool {
				return c.Verbose && c.Ratio == 2 && c.MaxConnections == 9 && c.ServerIP == "a.example"
			}},
		{"flag scalars", sources{flags: []string{"--verbose", "--ratio=1.5", "--max-connections=11", "--log-level=error"}},
			func(c testConfig) bool {
				return c.Verbose && c.Ratio == 1.5 && c.MaxConnections == 11 && c.LogLevel == "error"
			}},
		{"yaml number for a string", sources{yaml: "server_ip: 10\n"},
			func(c testConfig) bool { return c.ServerIP == "10" }},
		{"durations yaml", sources{yaml: "shutdown_timeout: 90s\nlifecycle:\n  timeout: 1m30s\n"},
			func(c testConfig) bool {
				return c.ShutdownTimeout == 90*time.Second && c.Lifecycle.Timeout == 90*time.Second
			}},
		{"duration env", sources{env: []string{"LIFECYCLE__TIMEOUT=2m"}},
			func(c testConfig) bool { return c.Lifecycle.Timeout == 2*time.Minute }},
		{"duration flag", sources{flags: []string{"--shutdown-timeout=250ms"}},
			func(c testConfig) bool { return c.ShutdownTimeout == 250*time.Millisecond }},
		{"duration bare zero", sources{yaml: "shutdown_timeout: 0\n"},
			func(c testConfig) bool { return c.ShutdownTimeout == 0 }},
		{"list yaml", sources{yaml: "allow_cidrs:\n  - 192.168.0.0/16\n  - 172.16.0.0/12\n"},
			func(c testConfig) bool {
				return reflect.DeepEqual(c.AllowCIDRs, []string{"192.168.0.0/16", "172.16.0.0/12"})
			}},
		{"list yaml empty", sources{yaml: "allow_cidrs: []\n"},
			func(c testConfig) bool { return len(c.AllowCIDRs) == 0 }},
		{"list yaml comma string", sources{yaml: "allow_cidrs: 192.168.0.0/16, 172.16.0.0/12\n"},
			func(c testConfig) bool {
				return reflect.DeepEqual(c.AllowCIDRs, []string{"192.168.0.0/16", "172.16.0.0/12"})
			}},
		{"list env", sources{env: []string{"ALLOW_CIDRS=192.168.0.0/16, 172.16.0.0/12,"}},
			func(c testConfig) bool {
				return reflect.DeepEqual(c.AllowCIDRs, []string{"192.168.0.0/16", "172.16.0.0/12"})
			}},
		{"list env empty", sources{env: []string{"ALLOW_CIDRS="}},
			func(c testConfig) bool { return c.AllowCIDRs != nil && len(c.AllowCIDRs) == 0 }},
		{"list flags repeated", sources{flags: []string{"--allow-cidrs=192.168.0.0/16", "--allow-cidrs=172.16.0.0/12"}},
			func(c testConfig) bool {
				return reflect.DeepEqual(c.AllowCIDRs, []string{"192.168.0.0/16", "172.16.0.0/12"})
			}},
		{"yaml null keeps default", sources{yaml: "server_port:\nlifecycle:\n"},
			func(c testConfig) bool {
				return c.ServerPort == 8443 && c.Lifecycle.APIEndpoint == "https://default.example"
			}},
		{"empty yaml file", sources{yaml: "# nothing\n"},
			func(c testConfig) bool { return reflect.DeepEqual(c, defaults()) }},
		{"embedded struct keys are top level", sources{env: []string{"LOG_LEVEL=trace"}},
			func(c testConfig) bool { return c.LogLevel == "trace" }},
		{"variables of another prefix ignored", sources{},
			func(c testConfig) bool { return reflect.DeepEqual(c, defaults()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected result: %+v", cfg)
			}
		})
	}
}

func TestDefaultsAreNotAliased(t *testing.T) {
	d := defaults()
	cfg := d
	if err := Load(&cfg, Options{Environ: []string{"ALLOW_CIDRS=1.2.3.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if d.AllowCIDRs[0] != "10.0.0.0/8" {
		t.Errorf("loading modified the defaults' slice: %v", d.AllowCIDRs)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     sources
		wantKey string
		wantMsg string // prefix of err.Error()
		wantIn  string // substring of err.Error()
	}{
		{"env int", sources{env: []string{"SERVER_PORT=abc"}},
			"server_port", `config: server_port: cannot parse "abc" as int`, "FLUIDITY_TEST_SERVER_PORT"},
		{"yaml int", sources{yaml: "server_port: abc\n"},
			"server_port", `config: server_port: cannot parse "abc" as int`, "test.yaml"},
		{"env empty for int", sources{env: []string{"SERVER_PORT="}},
			"server_port", `config: server_port: cannot parse "" as int`, ""},
		{"yaml float for int", sources{yaml: "server_port: 1.5\n"},
			"server_port", `config: server_port: cannot parse 1.5 as int`, ""},
		{"yaml list for int", sources{yaml: "server_port: [1]\n"},
			"server_port", `config: server_port: cannot parse a list as int`, ""},
		{"yaml bool", sources{yaml: "verbose: maybe\n"},
			"verbose", `config: verbose: cannot parse "maybe" as bool`, ""},
		{"env bool", sources{env: []string{"VERBOSE=2"}},
			"verbose", `config: verbose: cannot parse "2" as bool`, ""},
		{"negative uint", sources{yaml: "max_connections: -1\n"},
			"max_connections", `config: max_connections: cannot parse -1 as uint32`, ""},
		{"uint overflow", sources{env: []string{"MAX_CONNECTIONS=5000000000"}},
			"max_connections", `config: max_connections: 5000000000 is out of range for uint32`, ""},
		{"float", sources{env: []string{"RATIO=x"}},
			"ratio", `config: ratio: cannot parse "x" as float64`, ""},
		{"duration no unit", sources{yaml: "shutdown_timeout: 30\n"},
			"shutdown_timeout", `config: shutdown_timeout: cannot parse 30 as duration: missing unit`, ""},
		{"duration garbage", sources{env: []string{"LIFECYCLE__TIMEOUT=soon"}},
			"lifecycle.timeout", `config: lifecycle.timeout: cannot parse "soon" as duration`, "FLUIDITY_TEST_LIFECYCLE__TIMEOUT"},
		{"list of maps", sources{yaml: "allow_cidrs:\n  - a: 1\n"},
			"allow_cidrs", `config: allow_cidrs: cannot parse a list as list of strings`, ""},
		{"string from mapping", sources{yaml: "server_ip: {a: 1}\n"},
			"server_ip", `config: server_ip: expected string, got a mapping`, ""},
		{"unknown key with suggestion", sources{yaml: "server_prot: 1\n"},
			"server_prot", `config: server_prot: unknown key`, `did you mean "server_port"?`},
		{"unknown nested key", sources{yaml: "lifecycle:\n  api_endpiont: x\n"},
			"lifecycle.api_endpiont", `config: lifecycle.api_endpiont: unknown key`, `did you mean "lifecycle.api_endpoint"?`},
		{"unknown key far from any", sources{yaml: "completely_unrelated: 1\n"},
			"completely_unrelated", `config: completely_unrelated: unknown key`, ""},
		{"keys are case sensitive", sources{yaml: "Server_Port: 1\n"},
			"Server_Port", `config: Server_Port: unknown key`, ""},
		{"section given a scalar", sources{yaml: "lifecycle: 5\n"},
			"lifecycle", `config: lifecycle: is a section`, ""},
		{"ignored field is unknown in yaml", sources{yaml: "ignored: x\n"},
			"ignored", `config: ignored: unknown key`, ""},
		{"unknown env var with suggestion", sources{env: []string{"SERVR_PORT=1"}},
			"FLUIDITY_TEST_SERVR_PORT", `config: FLUIDITY_TEST_SERVR_PORT: unknown variable`, "did you mean FLUIDITY_TEST_SERVER_PORT?"},
		{"env section with one underscore", sources{env: []string{"LIFECYCLE_TIMEOUT=5s"}},
			"FLUIDITY_TEST_LIFECYCLE_TIMEOUT", `config: FLUIDITY_TEST_LIFECYCLE_TIMEOUT: unknown variable`, "did you mean FLUIDITY_TEST_LIFECYCLE__TIMEOUT?"},
		{"unknown env var far from any", sources{env: []string{"COMPLETELY_UNRELATED=1"}},
			"FLUIDITY_TEST_COMPLETELY_UNRELATED", `config: FLUIDITY_TEST_COMPLETELY_UNRELATED: unknown variable: no setting has this name`, ""},
		{"env names are case sensitive", sources{env: []string{"server_port=1"}},
			"FLUIDITY_TEST_server_port", `config: FLUIDITY_TEST_server_port: unknown variable`, "did you mean"},
		{"several unknown env vars", sources{env: []string{"ZZZ=1", "CONFIG=x", "SERVER_PORT=1"}},
			"FLUIDITY_TEST_CONFIG", `config: FLUIDITY_TEST_CONFIG: unknown variable`, "(and 1 more unknown: FLUIDITY_TEST_ZZZ)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, tt.src)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T), want *FieldError", err, err)
			}
			if fe.Key != tt.wantKey {
				t.Errorf("Key = %q, want %q", fe.Key, tt.wantKey)
			}
			if !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want prefix %q", err, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantIn)
			}
			if strings.Count(err.Error(), "config:") != 1 {
				t.Errorf("err = %q: want one error, not a chain", err)
			}
			if !reflect.DeepEqual(cfg, defaults()) {
				t.Errorf("dst modified on error: %+v", cfg)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	cfg := defaults()
	err := Load(&cfg, Options{File: filepath.Join(t.TempDir(), "missing.yaml")})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("server_port: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Load(&cfg, Options{File: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("malformed file: err = %v, want one naming %s", err, bad)
	}
}

func TestLoadRejectsBadTargets(t *testing.T) {
	type untagged struct {
		Port int
	}
	type badKey struct {
		Port int `koanf:"Port"`
	}
	type mapField struct {
		Headers map[string]string `koanf:"headers"`
	}
	type collide struct {
		A  string `koanf:"a_b"`
		AB struct {
			X string `koanf:"x"`
		} `koanf:"a"`
		B string `koanf:"a_x"`
	}
	var c testConfig
	tests := []struct {
		name string
		dst  any
	}{
		{"nil", nil},
		{"not a pointer", c},
		{"pointer to non-struct", new(int)},
		{"untagged field", &untagged{}},
		{"bad key", &badKey{}},
		{"unsupported type", &mapField{}},
		{"flag name collision", &collide{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Load(tt.dst, Options{}); err == nil {
				t.Fatal("want error, got nil")
			}
		})
	}
	t.Run("RegisterFlags panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("want panic")
			}
		}()
		RegisterFlags(pflag.NewFlagSet("x", pflag.ContinueOnError), &untagged{})
	})
}

func TestRegisterFlags(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	d := defaults()
	RegisterFlags(fs, &d)
	tests := []struct {
		name, typ, def, usage string
	}{
		{"server-ip", "string", "127.0.0.1", "address of the server"},
		{"server-port", "int", "8443", "TCP port of the server"},
		{"verbose", "bool", "false", "log more"},
		{"ratio", "float64", "0.5", "a ratio"},
		{"max-connections", "uint32", "100", "connection cap"},
		{"shutdown-timeout", "duration", "10s", "grace period"},
		{"allow-cidrs", "stringSlice", "[10.0.0.0/8]", "networks to allow"},
		{"lifecycle-api-endpoint", "string", "https://default.example", "wake/kill API"},
		{"lifecycle-timeout", "duration", "5s", "API timeout"},
		{"log-level", "string", "info", "log level"},
	}
	n := 0
	fs.VisitAll(func(*pflag.Flag) { n++ })
	if n != len(tests) {
		t.Errorf("registered %d flags, want %d", n, len(tests))
	}
	for _, tt := range tests {
		f := fs.Lookup(tt.name)
		if f == nil {
			t.Errorf("flag --%s not registered", tt.name)
			continue
		}
		if f.Value.Type() != tt.typ || f.DefValue != tt.def || f.Usage != tt.usage {
			t.Errorf("--%s: type %q default %q usage %q; want %q %q %q",
				tt.name, f.Value.Type(), f.DefValue, f.Usage, tt.typ, tt.def, tt.usage)
		}
	}
}

func TestReference(t *testing.T) {
	got := Reference(defaults())
	want := []Entry{
		{"server_ip", "SERVER_IP", "--server-ip", "string", "127.0.0.1", "address of the server"},
		{"server_port", "SERVER_PORT", "--server-port", "int", "8443", "TCP port of the server"},
		{"verbose", "VERBOSE", "--verbose", "bool", "false", "log more"},
		{"ratio", "RATIO", "--ratio", "float64", "0.5", "a ratio"},
		{"max_connections", "MAX_CONNECTIONS", "--max-connections", "uint32", "100", "connection cap"},
		{"shutdown_timeout", "SHUTDOWN_TIMEOUT", "--shutdown-timeout", "duration", "10s", "grace period"},
		{"allow_cidrs", "ALLOW_CIDRS", "--allow-cidrs", "list of strings", "10.0.0.0/8", "networks to allow"},
		{"lifecycle.api_endpoint", "LIFECYCLE__API_ENDPOINT", "--lifecycle-api-endpoint", "string", "https://default.example", "wake/kill API"},
		{"lifecycle.timeout", "LIFECYCLE__TIMEOUT", "--lifecycle-timeout", "duration", "5s", "API timeout"},
		{"log_level", "LOG_LEVEL", "--log-level", "string", "info", "log level"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Reference mismatch:\n got %+v\nwant %+v", got, want)
	}
}

func TestFieldError(t *testing.T) {
	inner := errors.New("must be between 1 and 65535")
	err := error(&FieldError{Key: "server_port", Err: inner})
	if got, want := err.Error(), "config: server_port: must be between 1 and 65535"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, inner) {
		t.Error("errors.Is does not reach the wrapped error")
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ key, flag, env string }{
		{"server_port", "server-port", "SERVER_PORT"},
		{"lifecycle.api_endpoint", "lifecycle-api-endpoint", "LIFECYCLE__API_ENDPOINT"},
		{"a.b.c_d", "a-b-c-d", "A__B__C_D"},
	}
	for _, tt := range tests {
		if got := FlagName(tt.key); got != tt.flag {
			t.Errorf("FlagName(%q) = %q, want %q", tt.key, got, tt.flag)
		}
		if got := EnvName(tt.key); got != tt.env {
			t.Errorf("EnvName(%q) = %q, want %q", tt.key, got, tt.env)
		}
	}
}
