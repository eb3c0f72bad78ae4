package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/status"
	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// exitDown is `fluidity status`'s exit code when the agent answers but its
// tunnel is down.
const exitDown = 3

const agentCmdsUsage = `Usage:
  fluidity status [--config agent.yaml] [--admin host:port] [--json]
  fluidity wake   [--config agent.yaml] [--wait]
  fluidity sleep  [--config agent.yaml]

status asks the running agent (its admin listener, admin_listen in the
agent's configuration, default 127.0.0.1:8081) and prints the tunnel's state,
route, sessions, streams, throughput and recent errors; --json prints
/status.json as it is. Exit code: 0 when the tunnel is up (or comes up with
the next request), 3 when it is down, 1 when the agent does not answer.

wake and sleep call the Wake/Kill API with the agent's lifecycle section
(lifecycle.api_endpoint, lifecycle.api_key) and its upstream_proxy; sleep
stops the server at once, whoever uses it.

The configuration is the agent's: --config's file, then FLUIDITY_AGENT_*
variables, as the agent reads them.

Flags:
`

// agentSettings are the keys of the agent's configuration these commands
// use. Other keys are the agent's business and are ignored here.
type agentSettings struct {
	AdminListen   string                 `koanf:"admin_listen"`
	UpstreamProxy string                 `koanf:"upstream_proxy"`
	UpstreamCreds string                 `koanf:"upstream_proxy_credentials_file"`
	Lifecycle     lifecycle.ClientConfig `koanf:"lifecycle"`
}

const agentEnvPrefix = "FLUIDITY_AGENT_"

// loadAgentSettings reads the agent's configuration file (if named) and
// environment, over the agent's defaults.
func loadAgentSettings(path string, environ []string) (agentSettings, error) {
	s := agentSettings{AdminListen: "127.0.0.1:8081", Lifecycle: lifecycle.DefaultClientConfig()}
	ko := koanf.New(".")
	if path != "" {
		if err := ko.Load(file.Provider(path), yaml.Parser()); err != nil {
			return s, fmt.Errorf("read %s: %w", path, err)
		}
	}
	keys := map[string]string{}
	for _, e := range config.Reference(&s) {
		keys[config.EnvName(e.Key)] = e.Key
	}
	err := ko.Load(env.Provider(".", env.Opt{
		Prefix:      agentEnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key, ok := keys[strings.TrimPrefix(name, agentEnvPrefix)]
			if !ok {
				return "", nil
			}
			return key, value
		},
	}), nil)
	if err != nil {
		return s, fmt.Errorf("read the environment: %w", err)
	}
	if err := ko.UnmarshalWithConf("", &s, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return s, fmt.Errorf("agent configuration: %w", err)
	}
	return s, nil
}

// runAgentCmd runs status, wake or sleep.
func runAgentCmd(cmd string, args, environ []string, stdout, stderr io.Writer) int {
	fs := commandFlags("fluidity " + cmd)
	configFile := fs.StringP("config", "c", "", "the agent's YAML configuration file")
	adminAddr := fs.String("admin", "", "the agent's admin listener, host:port (default: admin_listen from the configuration)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	wait := fs.Bool("wait", false, "wake: wait until the server runs")
	if code, done := parseCommand(fs, args, agentCmdsUsage, stdout, stderr); done {
		return code
	}
	s, err := loadAgentSettings(*configFile, environ)
	if err != nil {
		fmt.Fprintf(stderr, "fluidity %s: %v\n", cmd, err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Lifecycle.WakeTimeout+time.Minute)
	defer cancel()
	switch cmd {
	case "status":
		addr := s.AdminListen
		if *adminAddr != "" {
			addr = *adminAddr
		}
		return printStatus(ctx, addr, *asJSON, stdout, stderr)
	default:
		return lifecycleCmd(ctx, cmd, s, *wait, environ, stdout, stderr)
	}
}

func printStatus(ctx context.Context, addr string, asJSON bool, stdout, stderr io.Writer) int {
	if addr == "" {
		fmt.Fprintln(stderr, "fluidity status: the agent's admin listener is off (admin_listen is empty); use --admin")
		return exitError
	}
	// The admin listener is on this machine: never through a proxy.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	snap, raw, err := fetchStatus(ctx, hc, "http://"+addr+"/status.json")
	if err == nil && !asJSON && snap.Traffic.WindowSeconds == 0 {
		// Nothing asked for a while: the throughput needs a second look.
		time.Sleep(time.Second)
		snap, raw, err = fetchStatus(ctx, hc, "http://"+addr+"/status.json")
	}
	if err != nil {
		fmt.Fprintf(stderr, "fluidity status: the agent does not answer at %s: %v\n(is it running? is admin_listen set to another address?)\n", addr, err)
		return exitError
	}
	if asJSON {
		_, _ = stdout.Write(raw)
	} else {
		_ = snap.WriteText(stdout, "http://"+addr+"/")
	}
	if !snap.Up {
		return exitDown
	}
	return exitOK
}

func fetchStatus(ctx context.Context, hc *http.Client, url string) (status.Snapshot, []byte, error) {
	var snap status.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return snap, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return snap, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return snap, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return snap, nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, &snap); err != nil {
		return snap, nil, fmt.Errorf("not a status answer: %w", err)
	}
	return snap, raw, nil
}

func lifecycleCmd(ctx context.Context, cmd string, s agentSettings, wait bool, environ []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "fluidity %s: %v\n", cmd, err)
		return exitError
	}
	if !s.Lifecycle.Enabled() {
		fmt.Fprintf(stderr, "fluidity %s: no lifecycle API in the agent's configuration (lifecycle.api_endpoint; give --config agent.yaml)\n", cmd)
		return exitUsage
	}
	if err := s.Lifecycle.Validate(); err != nil {
		return fail(err)
	}
	route, err := upstream.New(upstream.Config{
		Proxy: s.UpstreamProxy, CredentialsFile: s.UpstreamCreds, Environ: environ,
		Warn: func(msg string) { fmt.Fprintln(stderr, "fluidity "+cmd+": "+msg) },
	})
	if err != nil {
		return fail(err)
	}
	// The agent's route to the API, and no proxy from the environment but
	// the one env mode names (as the agent does).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = route.DialContext
	api := s.Lifecycle.Client(&http.Client{Timeout: 30 * time.Second, Transport: tr}, zerolog.Nop())
	switch {
	case cmd == "sleep":
		r, err := api.KillWith(ctx, lifecycle.KillRequest{})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "server %s\n", r.State)
	case wait:
		addr, err := api.WaitRunning(ctx, s.Lifecycle.PollInterval, func(r lifecycle.WakeResult, elapsed time.Duration) {
			fmt.Fprintf(stdout, "%s after %s\n", r.State, status.HumanDuration(elapsed))
		})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "server running at %s\n", addr)
	default:
		r, err := api.Wake(ctx)
		if err != nil {
			return fail(err)
		}
		if r.Address != "" {
			fmt.Fprintf(stdout, "server %s at %s\n", r.State, r.Address)
		} else {
			fmt.Fprintf(stdout, "server %s\n", r.State)
		}
	}
	return exitOK
}
