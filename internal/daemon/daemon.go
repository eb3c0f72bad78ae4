// Package daemon holds what the agent and server mains share: command-line
// handling (flags, --config, --help, version) on top of internal/config.
package daemon

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/logging"
)

// Command describes one daemon's command line.
type Command struct {
	Name      string // binary name, e.g. "fluidity-agent"
	Summary   string // one line for --help
	EnvPrefix string // e.g. "FLUIDITY_AGENT_"
	// Subcommands are more usage lines for --help, after the daemon's name,
	// e.g. "service install --config FILE".
	Subcommands []string
	// SkipValidate loads without calling cfg's Validate, for subcommands (such as a
	// health check) that need only part of the configuration.
	SkipValidate bool
}

// Load parses args into cfg (a pointer to a config struct holding the defaults),
// reading --config's YAML file, then environ, then the flags. It returns done=true
// with an exit code when the command line was fully handled (version, --help) or
// was wrong; the error message, naming the key at fault, is already printed.
func (c Command) Load(args, environ []string, cfg any, stdout, stderr io.Writer) (done bool, code int) {
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
		fmt.Fprintf(stdout, "%s %s\n", c.Name, buildinfo.String())
		return true, 0
	}
	fs := pflag.NewFlagSet(c.Name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.StringP("config", "c", "", "YAML configuration file")
	config.RegisterFlags(fs, cfg)
	fs.Usage = func() {
		var more strings.Builder
		for _, s := range c.Subcommands {
			more.WriteString("  " + c.Name + " " + s + "\n")
		}
		fmt.Fprintf(stdout, "%s — %s\n\nUsage:\n  %s [flags]\n  %s version\n%s\nPrecedence: flags > environment (%s<KEY>) > --config file > defaults.\n\nFlags:\n%s",
			c.Name, c.Summary, c.Name, c.Name, more.String(), c.EnvPrefix, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) { // pflag has printed the usage
			return true, 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return true, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see --help)\n", c.Name, fs.Arg(0))
		return true, 2
	}
	if err := config.Load(cfg, config.Options{File: *configFile, EnvPrefix: c.EnvPrefix, Environ: environ, Flags: fs}); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return true, 2
	}
	if v, ok := cfg.(interface{ Validate() error }); ok && !c.SkipValidate {
		if err := v.Validate(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
			return true, 2
		}
	}
	if fl, ok := cfg.(fileLister); ok && !c.SkipValidate {
		if err := CheckFiles(fl.Files()); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
			return true, 2
		}
	}
	return false, 0
}

// LogSettings are the logging keys both daemons share; embed it in a daemon's
// Config (its keys stay top-level).
type LogSettings struct {
	LogLevel  string `koanf:"log_level" help:"trace, debug, info, warn or error"`
	LogFormat string `koanf:"log_format" help:"json, or console for people"`
}

// DefaultLogSettings returns info-level JSON logs.
func DefaultLogSettings() LogSettings { return LogSettings{LogLevel: "info", LogFormat: "json"} }

// CheckLogging validates the settings, naming the key at fault.
func (l LogSettings) CheckLogging() error {
	if _, err := logging.New(io.Discard, l.LogLevel, "json"); err != nil {
		return &config.FieldError{Key: "log_level", Err: err}
	}
	if _, err := logging.New(io.Discard, "info", l.LogFormat); err != nil {
		return &config.FieldError{Key: "log_format", Err: err}
	}
	return nil
}

// Logger returns the daemon's logger, writing to w, for a component name.
func (l LogSettings) Logger(w io.Writer, component string) zerolog.Logger {
	log, _ := logging.New(w, l.LogLevel, l.LogFormat) // checked by CheckLogging
	return log.With().Str("component", component).Logger()
}

// RuntimeSettings are the Go runtime keys both daemons share; embed it like
// LogSettings.
type RuntimeSettings struct {
	GCPercent int `koanf:"gc_percent" help:"garbage collector target (Go's GOGC); higher spends memory to save CPU per request. A GOGC environment variable takes precedence"`
	// GCHeadroom keeps gc_percent's headroom for the small live heap of
	// request traffic, and bounds it when bulk transfers' buffers make the
	// live heap large (BENCHMARKS.md, peak RSS over the 40 ms link).
	GCHeadroom int64 `koanf:"gc_headroom" help:"bytes the heap may grow past its live part between collections once gc_percent would allow more: above gc_headroom × 100 / gc_percent of live heap the collector's target is lowered to keep the growth near this (not below 50 %); 0 leaves gc_percent alone. Off when GOGC is set"`
	// MemoryLimit bounds what gc_percent's headroom may take when the live
	// heap is large (receive windows full during bulk transfers), not the
	// live heap itself: past it the collector runs more often, up to half
	// the CPU.
	MemoryLimit int64  `koanf:"memory_limit" help:"soft limit in bytes on the Go runtime's memory (Go's GOMEMLIMIT): near it the garbage collector runs more often instead of letting the heap grow to gc_percent's target; 0 is none. A GOMEMLIMIT environment variable takes precedence"`
	CPUProfile  string `koanf:"cpu_profile" help:"write a Go CPU profile (pprof) of the whole run to this file, finished when the daemon stops; empty (the default) is off. For performance work (go tool pprof)"`
	MemProfile  string `koanf:"mem_profile" help:"write a Go allocation profile (pprof allocs: every allocation since start, sampled) to this file when the daemon stops; empty (the default) is off"`
	// HeapProfile, unlike MemProfile, shows what holds memory at the peak
	// rather than what was allocated over the run.
	HeapProfile string `koanf:"heap_profile" help:"write a Go heap profile (pprof heap: what was in use at the last collection) to this file each time the daemon's resident memory passes 5 % above its last high, and the runtime's memory figures to the same name plus .txt; what is left is the highest peak's. Empty (the default) is off. For performance work"`
}

// DefaultGCPercent is twice Go's default. Every proxied request allocates
// (yamux streams, HTTP headers, envelopes) while the live heap stays small, so
// at Go's 100 the daemons collect many times a second. In `make bench`, 200
// gave 10-15 % more small requests per second than 100 (figure 3, side by side)
// with the same idle RSS.
const DefaultGCPercent = 200

// DefaultRuntimeSettings returns the daemons' runtime defaults.
func DefaultRuntimeSettings() RuntimeSettings {
	return RuntimeSettings{GCPercent: DefaultGCPercent, GCHeadroom: DefaultGCHeadroom}
}

// DefaultGCHeadroom is what gc_percent 200 gives a live heap of 8 MiB, about
// an idle daemon's or one serving small requests: their collections are as
// before, while a bulk transfer's live buffers (3-19 MB at figure 2's peak)
// no longer let the heap run to three times them.
const DefaultGCHeadroom = 16 << 20

// CheckRuntime validates the settings, naming the key at fault.
func (r RuntimeSettings) CheckRuntime() error {
	if r.GCPercent < 10 {
		return &config.FieldError{Key: "gc_percent", Err: errors.New("must be at least 10")}
	}
	if r.GCHeadroom < 0 {
		return &config.FieldError{Key: "gc_headroom", Err: errors.New("must not be negative")}
	}
	if r.MemoryLimit != 0 && r.MemoryLimit < minMemoryLimit {
		return &config.FieldError{Key: "memory_limit", Err: fmt.Errorf("must be 0 (none) or at least %d (16 MiB)", minMemoryLimit)}
	}
	return nil
}

// minMemoryLimit is below an idle daemon's own runtime memory (about 10 MB):
// a smaller limit would keep the collector running all the time.
const minMemoryLimit = 16 << 20

// ApplyRuntime sets the garbage collector's target and the memory limit,
// each unless environ holds its variable (GOGC, GOMEMLIMIT: which the runtime
// has already applied, and which a person set on purpose), and starts the
// gc_headroom tuner unless GOGC is set. restore stops the tuner.
func (r RuntimeSettings) ApplyRuntime(environ []string) (restore func()) {
	var gogc, gomemlimit bool
	for _, kv := range environ {
		gogc = gogc || strings.HasPrefix(kv, "GOGC=")
		gomemlimit = gomemlimit || strings.HasPrefix(kv, "GOMEMLIMIT=")
	}
	if !gomemlimit && r.MemoryLimit > 0 {
		debug.SetMemoryLimit(r.MemoryLimit)
	}
	if gogc {
		return func() {}
	}
	debug.SetGCPercent(r.GCPercent)
	if r.GCHeadroom == 0 {
		return func() {}
	}
	return startGCHeadroom(r.GCPercent, r.GCHeadroom)
}
