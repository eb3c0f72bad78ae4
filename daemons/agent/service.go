package main

// `fluidity-agent service ...`: the agent as a per-user service that starts at
// login and restarts on failure — a systemd user unit on Linux, a LaunchAgent on
// macOS, a Windows service. github.com/kardianos/service installs, starts and
// stops it; the unit and the plist are rendered here (its built-in templates
// write a system unit, WantedBy=multi-user.target, and log to files) so that
// they can be golden-tested and checked with systemd-analyze on any machine.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kardianos/service"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/fluidity-tunnel/fluidity/internal/daemon"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

const (
	serviceName        = "fluidity-agent"
	serviceLabel       = "com.github.fluidity-tunnel.agent" // launchd's reverse-DNS label
	serviceDisplayName = "Fluidity agent"
	serviceDescription = "Fluidity agent: local HTTP proxy that tunnels everything to your Fluidity server"
	serviceDocs        = "https://github.com/fluidity-tunnel/fluidity#install-the-agent-as-a-service"
	// restartDelay is the pause before a failed agent is started again.
	restartDelay = 5 * time.Second
	// stopMargin is what a stop allows beyond shutdown_timeout: the Kill call on
	// exit (10 s at most) and the process's own exit.
	stopMargin = 15 * time.Second
)

const serviceUsage = `Usage:
  fluidity-agent service install --config FILE [--dry-run]
  fluidity-agent service uninstall|start|stop|restart|status

install registers the agent to run with FILE (its absolute path is fixed in the
unit) at login and to restart when it fails: a systemd user unit on Linux, a
LaunchAgent on macOS, a Windows service (from an elevated prompt). The
configuration is validated first; relative paths in it are relative to its
directory. --dry-run prints what would be installed instead. Restart the
service after editing the configuration; install again (uninstall first) to
point it at another file or binary.
`

// errUsage marks a wrong command line (exit status 2).
var errUsage = errors.New("wrong usage")

// serviceSpec is what a platform's service definition is rendered from.
type serviceSpec struct {
	Executable  string        // absolute path of the agent binary
	Config      string        // absolute path of agent.yaml
	LogFile     string        // where launchd writes stdout and stderr
	StopTimeout time.Duration // how long a stop waits for the graceful shutdown
}

// dispatch runs a `service` subcommand, or else the agent (under the Windows
// service manager when that is what started the process).
func dispatch(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "service" {
		return serviceCommand(args[1:], stdout, stderr)
	}
	if code, ok := runAsWindowsService(args, environ); ok {
		return code
	}
	return run(ctx, args, environ, stdout, stderr)
}

func serviceCommand(args []string, stdout, stderr io.Writer) int {
	err := serviceAction(args, stdout)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		fmt.Fprint(stdout, serviceUsage)
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "fluidity-agent service: %v\n\n%s", err, serviceUsage)
		return 2
	case errors.Is(err, errNotRunning):
		return 3 // as systemctl status and LSB init scripts say "not running"
	case err != nil:
		fmt.Fprintf(stderr, "fluidity-agent service: %v\n", err)
		return 1
	}
	return 0
}

var errNotRunning = errors.New("not running")

func serviceAction(args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("fluidity-agent service", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.StringP("config", "c", "", "agent.yaml for the service to run with")
	dryRun := fs.Bool("dry-run", false, "print the service definition instead of installing it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one of install, uninstall, start, stop, restart, status", errUsage)
	}
	action := fs.Arg(0)
	if action != "install" && (*configFile != "" || *dryRun) {
		return fmt.Errorf("%w: --config and --dry-run belong to install", errUsage)
	}
	switch action {
	case "install":
		if *configFile == "" {
			return fmt.Errorf("%w: install needs --config FILE", errUsage)
		}
		spec, err := newServiceSpec(*configFile)
		if err != nil {
			return err
		}
		cfg, err := serviceConfig(runtime.GOOS, spec)
		if err != nil {
			return err
		}
		if *dryRun {
			_, err := io.WriteString(stdout, describeService(runtime.GOOS, cfg))
			return err
		}
		svc, err := newService(cfg)
		if err != nil {
			return err
		}
		// kardianos/service writes the unit, then enables it with systemctl; when
		// that fails (no user manager) the unit must not stay to block the next try.
		unit := ""
		if runtime.GOOS == "linux" {
			if home, err := os.UserHomeDir(); err == nil {
				unit = filepath.Join(home, ".config", "systemd", "user", serviceName+".service")
				if _, err := os.Stat(unit); err == nil {
					return fmt.Errorf("%s exists: to reinstall, run `fluidity-agent service uninstall` first", unit)
				}
			}
		}
		if err := svc.Install(); err != nil {
			if unit != "" {
				_ = os.Remove(unit)
			}
			return fmt.Errorf("install: %w", err)
		}
		fmt.Fprintf(stdout, "installed %s for %s; it starts at login (boot on Windows). Start it now: fluidity-agent service start\n", cfg.Name, spec.Config)
		return nil
	case "uninstall", "start", "stop", "restart", "status":
		cfg, err := serviceConfig(runtime.GOOS, serviceSpec{})
		if err != nil {
			return err
		}
		svc, err := newService(cfg)
		if err != nil {
			return err
		}
		if action == "status" {
			st, err := svc.Status()
			switch {
			case errors.Is(err, service.ErrNotInstalled):
				fmt.Fprintln(stdout, "not installed")
				return errNotRunning
			case err != nil:
				return fmt.Errorf("status: %w", err)
			case st == service.StatusRunning:
				fmt.Fprintln(stdout, "running")
				return nil
			default:
				fmt.Fprintln(stdout, "stopped")
				return errNotRunning
			}
		}
		if err := service.Control(svc, action); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s done\n", cfg.Name, action)
		return nil
	}
	return fmt.Errorf("%w: unknown action %q", errUsage, action)
}

// newServiceSpec validates the configuration the service would run with and
// fixes the absolute paths of the binary and the configuration.
func newServiceSpec(configFile string) (serviceSpec, error) {
	abs, err := filepath.Abs(configFile)
	if err != nil {
		return serviceSpec{}, err
	}
	cfg, err := checkServiceConfig(abs)
	if err != nil {
		return serviceSpec{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return serviceSpec{}, fmt.Errorf("locate the agent binary: %w", err)
	}
	if strings.Contains(exe, "go-build") {
		return serviceSpec{}, fmt.Errorf("%s is a temporary binary (go run): install from a built one (make build, go install)", exe)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return serviceSpec{}, err
	}
	return serviceSpec{
		Executable:  exe,
		Config:      abs,
		LogFile:     filepath.Join(home, "Library", "Logs", serviceName+".log"),
		StopTimeout: cfg.ShutdownTimeout + stopMargin,
	}, nil
}

// checkServiceConfig loads path as the service will (no flags, and none of this
// shell's FLUIDITY_AGENT_* variables), and loads the certificates from the
// service's working directory, the configuration's own.
func checkServiceConfig(path string) (Config, error) {
	cfg := defaultConfig()
	var msg strings.Builder
	load := command
	load.SkipValidate = true // the files are checked below, from the service's directory
	if done, _ := load.Load([]string{"--config", path}, nil, &cfg, io.Discard, &msg); done {
		return cfg, fmt.Errorf("the configuration cannot work as a service: %s", strings.TrimSpace(msg.String()))
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&cfg.CertFile, &cfg.KeyFile, &cfg.CACertFile, &cfg.UpstreamCreds, &cfg.UpstreamKrb5, &cfg.UpstreamKeytab} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%s cannot work as a service: %w", path, err)
	}
	files := append(cfg.Files(), daemon.File{Key: "upstream_proxy_krb5_conf", Path: cfg.UpstreamKrb5},
		daemon.File{Key: "upstream_proxy_keytab", Path: cfg.UpstreamKeytab})
	if err := daemon.CheckFiles(files); err != nil {
		return cfg, fmt.Errorf("%s cannot work as a service (relative paths are relative to %s): %w", path, dir, err)
	}
	if _, err := tunnel.NewCertReloader(cfg.CertFile, cfg.KeyFile, cfg.CACertFile, zerolog.Nop()); err != nil {
		return cfg, fmt.Errorf("%s: certificates: %w", path, err)
	}
	return cfg, nil
}

// serviceConfig is what kardianos/service installs on goos. Only the name
// matters to uninstall, start, stop and status.
func serviceConfig(goos string, spec serviceSpec) (*service.Config, error) {
	c := &service.Config{
		Name:        serviceName,
		DisplayName: serviceDisplayName,
		Description: serviceDescription,
		Executable:  spec.Executable,
		Option:      service.KeyValue{"UserService": true},
	}
	switch goos {
	case "linux":
		if spec.Config != "" {
			unit, err := systemdUnit(spec)
			if err != nil {
				return nil, err
			}
			c.Option["SystemdScript"] = unit
		}
	case "darwin":
		c.Name = serviceLabel
		if spec.Config != "" {
			c.Option["LaunchdConfig"] = launchdPlist(spec)
		}
	case "windows":
		// A Windows service belongs to the machine and runs as LocalSystem;
		// the agent changes to the configuration's directory itself.
		c.Option = service.KeyValue{
			"StartType":              "automatic",
			"DelayedAutoStart":       true,
			"OnFailure":              "restart",
			"OnFailureDelayDuration": restartDelay.String(),
			"OnFailureResetPeriod":   300, // seconds without failure that reset the count
		}
		if spec.Config != "" {
			c.Arguments = []string{"--config", spec.Config}
		}
	default:
		return nil, fmt.Errorf("services are supported on Linux (systemd), macOS (launchd) and Windows, not %s", goos)
	}
	return c, nil
}

// newService binds cfg to this machine's service manager. On Linux that is
// systemd: the other init systems kardianos/service knows (SysV, upstart,
// OpenRC) have no per-user services.
func newService(cfg *service.Config) (service.Service, error) {
	if runtime.GOOS != "linux" {
		return service.New(noProgram{}, cfg)
	}
	for _, sys := range service.AvailableSystems() {
		if sys.String() == "linux-systemd" {
			return sys.New(noProgram{}, cfg)
		}
	}
	return nil, errors.New("systemd not found: on Linux the agent installs as a systemd user unit")
}

// noProgram is the service.Interface of the commands that only manage the
// service: they never run it.
type noProgram struct{}

func (noProgram) Start(service.Service) error { return nil }
func (noProgram) Stop(service.Service) error  { return nil }

// describeService is install --dry-run's output: the unit or plist as written,
// or on Windows the service's settings.
func describeService(goos string, c *service.Config) string {
	switch goos {
	case "linux":
		return c.Option["SystemdScript"].(string)
	case "darwin":
		return c.Option["LaunchdConfig"].(string)
	}
	b, _ := json.MarshalIndent(struct {
		Name, DisplayName, Description, Executable string
		Arguments                                  []string
		Option                                     service.KeyValue
	}{c.Name, c.DisplayName, c.Description, c.Executable, c.Arguments, c.Option}, "", "  ")
	return string(b) + "\n"
}

// systemdUnit renders the user unit. The agent logs to stderr, which systemd
// sends to the journal (journalctl --user -t fluidity-agent); SIGTERM starts its
// graceful shutdown. Exit status 2 is an invalid configuration, which a restart
// would not mend.
func systemdUnit(s serviceSpec) (string, error) {
	// systemd refuses these in a program's path, quoted or not.
	if strings.ContainsAny(s.Executable, `"'\`) {
		return "", fmt.Errorf("%s: systemd cannot run a program whose path holds a quote or a backslash; move it", s.Executable)
	}
	exe, err := systemdQuote(s.Executable, false)
	if err != nil {
		return "", err
	}
	conf, err := systemdQuote(s.Config, true)
	if err != nil {
		return "", err
	}
	dir, err := systemdPath(filepath.Dir(s.Config))
	if err != nil {
		return "", err
	}
	return `# Written by "fluidity-agent service install"; remove it with "fluidity-agent service uninstall".
[Unit]
Description=` + serviceDescription + `
Documentation=` + serviceDocs + `
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=exec
ExecStart=` + exe + ` --config ` + conf + `
WorkingDirectory=` + dir + `
Restart=on-failure
RestartSec=` + strconv.Itoa(int(restartDelay.Seconds())) + `
RestartPreventExitStatus=2
KillSignal=SIGTERM
TimeoutStopSec=` + strconv.Itoa(int(s.StopTimeout.Seconds())) + `
StandardOutput=journal
StandardError=journal
SyslogIdentifier=` + serviceName + `

[Install]
WantedBy=default.target
`, nil
}

// systemdQuote quotes one word of a command line: systemd expands % specifiers
// inside quotes too, and $ variables in the arguments (not in the program's
// path), so those are doubled.
func systemdQuote(s string, arg bool) (string, error) {
	if strings.ContainsAny(s, "\n\r") {
		return "", fmt.Errorf("%q: a path with a line break cannot go into a systemd unit", s)
	}
	pairs := []string{`\`, `\\`, `"`, `\"`, `%`, `%%`}
	if arg {
		pairs = append(pairs, `$`, `$$`)
	}
	return `"` + strings.NewReplacer(pairs...).Replace(s) + `"`, nil
}

// systemdPath is a path setting's value: no quotes, specifiers doubled.
func systemdPath(s string) (string, error) {
	if strings.ContainsAny(s, "\n\r") {
		return "", fmt.Errorf("%q: a path with a line break cannot go into a systemd unit", s)
	}
	return strings.ReplaceAll(s, "%", "%%"), nil
}

// launchdPlist renders the LaunchAgent. KeepAlive restarts the agent when it
// exits with an error (launchd waits ThrottleInterval seconds between starts);
// a stop sends SIGTERM and waits ExitTimeOut seconds before SIGKILL.
func launchdPlist(s serviceSpec) string {
	x := strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;", `"`, "&quot;", `'`, "&apos;").Replace
	return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by "fluidity-agent service install"; remove it with "fluidity-agent service uninstall". -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + serviceLabel + `</string>
	<key>ProgramArguments</key>
	<array>
		<string>` + x(s.Executable) + `</string>
		<string>--config</string>
		<string>` + x(s.Config) + `</string>
	</array>
	<key>WorkingDirectory</key>
	<string>` + x(filepath.Dir(s.Config)) + `</string>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>` + strconv.Itoa(int(restartDelay.Seconds())) + `</integer>
	<key>ExitTimeOut</key>
	<integer>` + strconv.Itoa(int(s.StopTimeout.Seconds())) + `</integer>
	<key>StandardOutPath</key>
	<string>` + x(s.LogFile) + `</string>
	<key>StandardErrorPath</key>
	<string>` + x(s.LogFile) + `</string>
</dict>
</plist>
`
}
