// Command fluidity-agent is the local side of Fluidity: an HTTP proxy on the
// user's machine whose every request, CONNECT and WebSocket travels as a stream
// of one mutually authenticated TLS 1.3 connection to the Fluidity server.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/admin"
	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/daemon"
	"github.com/fluidity-tunnel/fluidity/internal/metrics"
	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/proxy"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Config is agent.yaml. Keys follow the seed; every key is also an environment
// variable (FLUIDITY_AGENT_<KEY>) and a flag (--key-with-dashes).
type Config struct {
	ServerIP       string `koanf:"server_ip" help:"address of the Fluidity server to dial (IP or host name)"`
	ServerPort     int    `koanf:"server_port" help:"the server's tunnel port"`
	ServerName     string `koanf:"server_name" help:"name the server certificate must carry; verified instead of the dialled address"`
	ServerSNI      string `koanf:"server_sni" help:"server name the TLS ClientHello shows in clear text (SNI); empty sends none, so nothing names the product. Only what an observer reads: the certificate is verified for server_name whatever this says"`
	ListenAddr     string `koanf:"listen_addr" help:"address the local proxy listens on; anything but loopback shares your tunnel with the network"`
	LocalProxyPort int    `koanf:"local_proxy_port" help:"port the local proxy listens on"`
	SOCKSPort      int    `koanf:"socks_port" help:"port of a SOCKS5 listener on listen_addr (CONNECT, no password, names resolved by the server: socks5h); 0 turns it off"`
	AdminListen    string `koanf:"admin_listen" help:"host:port of the admin listener: the status page (GET /), /status.json, /metrics (Prometheus) and /proxy.pac; empty turns it off. It answers only requests for localhost or its own address"`
	CertFile       string `koanf:"cert_file" help:"this agent's client certificate (PEM)"`
	KeyFile        string `koanf:"key_file" help:"the client certificate's private key (PEM)"`
	CACertFile     string `koanf:"ca_cert_file" help:"the private CA that signed the server certificate (PEM)"`
	UpstreamProxy  string `koanf:"upstream_proxy" help:"how to reach the server and the Wake/Kill API: empty for directly; a proxy URL, http://host:port (CONNECT, Basic, NTLM or Negotiate), https://host:port (TLS to the proxy), socks5://host:port (names resolved here) or socks5h://host:port (resolved by the proxy); or env, to take HTTPS_PROXY/ALL_PROXY/NO_PROXY from the environment"`
	UpstreamCreds  string `koanf:"upstream_proxy_credentials_file" help:"file holding one line user:password (DOMAIN\\user for NTLM) for upstream_proxy; refused if other users may read it (chmod o-rwx); keeps the password out of the command line and the config"`
	UpstreamKrb5   string `koanf:"upstream_proxy_krb5_conf" help:"krb5.conf of your Kerberos realm (its KDCs, reached directly); turns on Negotiate for an http(s) upstream_proxy that asks for it, with a ticket for HTTP/<the proxy URL's host>. The secret is upstream_proxy_keytab or the password in upstream_proxy_credentials_file (user@REALM:password)"`
	UpstreamCA     string `koanf:"upstream_proxy_ca_file" help:"CA certificates (PEM) that may sign an https:// upstream_proxy's certificate, trusted beside the system's roots: for a corporate proxy whose certificate comes from an internal CA"`
	UpstreamKeytab string `koanf:"upstream_proxy_keytab" help:"keytab holding your Kerberos key, for upstream_proxy_krb5_conf (its first principal is the user unless the credentials file names one); refused if other users may read it"`
	daemon.LogSettings
	daemon.RuntimeSettings
	SplitSettings
	DialTimeout     time.Duration `koanf:"dial_timeout" help:"bound on one connection attempt to the server (TCP and TLS)"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" help:"how long requests in flight may finish after SIGINT/SIGTERM"`
	KeepAlive       time.Duration `koanf:"keepalive_interval" help:"how often the tunnel is pinged; a dead server is noticed within this plus write_timeout"`
	WriteTimeout    time.Duration `koanf:"write_timeout" help:"how long a frame or ping may wait before the tunnel is declared dead"`
	ReconnectMax    time.Duration `koanf:"reconnect_max" help:"ceiling of the exponential backoff between reconnection attempts"`
	CertReload      time.Duration `koanf:"cert_reload_interval" help:"how often certificate files are checked for changes; 0 turns reloading off"`
	MaxHeaderBytes  int           `koanf:"max_request_header_bytes" help:"cap on a local client's request headers; larger requests get 431"`
	IdleTimeout     time.Duration `koanf:"idle_timeout" help:"WebSocket relays idle this long are closed"`
	Sessions        int           `koanf:"sessions" help:"connections (yamux sessions) kept to the server; each new request takes the least busy, so a download does not hold up interactive requests"`
	StreamWindow    uint32        `koanf:"stream_window" help:"largest receive window one stream may grow to, in bytes (windows start at 256 KiB and grow while the reader keeps up): the cap on one stream's speed, window / round-trip time"`
	ReceiveBudget   int64         `koanf:"receive_budget" help:"bytes of receive window all streams together may hold; past it no window grows"`
	RetryInterval   time.Duration `koanf:"connect_retry_interval" help:"after a wake-up, the longest wait between attempts to reach the starting server (they start at 250 ms and double)"`
	RetryTimeout    time.Duration `koanf:"connect_retry_timeout" help:"after a wake-up, how long to keep trying to reach the server before giving up"`

	Lifecycle lifecycle.ClientConfig `koanf:"lifecycle"`
}

func defaultConfig() Config {
	return Config{
		ServerPort:      443, // the cloud stack publishes 443 (infra/fargate.yaml)
		ServerName:      tunnel.DefaultServerName,
		ListenAddr:      "127.0.0.1",
		LocalProxyPort:  8080,
		AdminListen:     "127.0.0.1:8081",
		LogSettings:     daemon.DefaultLogSettings(),
		RuntimeSettings: daemon.DefaultRuntimeSettings(),
		DialTimeout:     15 * time.Second,
		ShutdownTimeout: 30 * time.Second,
		KeepAlive:       10 * time.Second,
		WriteTimeout:    20 * time.Second,
		ReconnectMax:    30 * time.Second,
		CertReload:      10 * time.Second,
		MaxHeaderBytes:  proxy.DefaultConfig().MaxHeaderBytes,
		IdleTimeout:     proxy.DefaultConfig().IdleTimeout,
		Sessions:        tunnel.DefaultClientConfig().Sessions,
		StreamWindow:    tunnel.DefaultSessionConfig().StreamWindow,
		ReceiveBudget:   tunnel.DefaultClientConfig().ReceiveBudget,
		RetryInterval:   5 * time.Second,
		RetryTimeout:    90 * time.Second,
		Lifecycle:       lifecycle.DefaultClientConfig(),
	}
}

// Validate names the first key whose value cannot work.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &config.FieldError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	switch {
	case c.ServerIP == "" && !c.Lifecycle.Enabled():
		return bad("server_ip", "required (or set lifecycle.api_endpoint to learn it from Wake)")
	case c.ServerPort < 1 || c.ServerPort > 65535:
		return bad("server_port", "%d is not a port", c.ServerPort)
	case c.ServerName == "":
		return bad("server_name", "required")
	case checkSNI(c.ServerSNI) != nil:
		return bad("server_sni", "%v", checkSNI(c.ServerSNI))
	case net.ParseIP(c.ListenAddr) == nil && c.ListenAddr != "localhost":
		return bad("listen_addr", "%q is not an IP address", c.ListenAddr)
	case c.LocalProxyPort < 0 || c.LocalProxyPort > 65535:
		return bad("local_proxy_port", "%d is not a port", c.LocalProxyPort)
	case c.AdminListen != "" && admin.CheckAddr(c.AdminListen) != nil:
		return bad("admin_listen", "%v", admin.CheckAddr(c.AdminListen))
	case c.AdminListen == net.JoinHostPort(c.ListenAddr, strconv.Itoa(c.LocalProxyPort)):
		return bad("admin_listen", "%s is the proxy's own address", c.AdminListen)
	case c.CertFile == "":
		return bad("cert_file", "required")
	case c.KeyFile == "":
		return bad("key_file", "required")
	case c.CACertFile == "":
		return bad("ca_cert_file", "required")
	case c.DialTimeout <= 0:
		return bad("dial_timeout", "must be positive")
	case c.ShutdownTimeout <= 0:
		return bad("shutdown_timeout", "must be positive")
	case c.KeepAlive <= 0:
		return bad("keepalive_interval", "must be positive")
	case c.WriteTimeout <= 0:
		return bad("write_timeout", "must be positive")
	case c.ReconnectMax < 250*time.Millisecond:
		return bad("reconnect_max", "must be at least 250ms")
	case c.CertReload < 0:
		return bad("cert_reload_interval", "must not be negative")
	case c.MaxHeaderBytes < 4096:
		return bad("max_request_header_bytes", "must be at least 4096")
	case c.IdleTimeout < 0:
		return bad("idle_timeout", "must not be negative")
	case c.Sessions < 1 || c.Sessions > tunnel.MaxSessions:
		return bad("sessions", "must be between 1 and %d", tunnel.MaxSessions)
	case c.StreamWindow < 256<<10:
		return bad("stream_window", "must be at least 262144 (256 KiB)")
	case c.ReceiveBudget < 256<<10:
		return bad("receive_budget", "must be at least 262144 (256 KiB)")
	case c.RetryInterval <= 0:
		return bad("connect_retry_interval", "must be positive")
	case c.RetryTimeout < 0:
		return bad("connect_retry_timeout", "must not be negative")
	case c.UpstreamCreds != "" && c.UpstreamProxy == "":
		return bad("upstream_proxy_credentials_file", "set, but upstream_proxy is empty (direct)")
	case c.UpstreamCA != "" && c.UpstreamProxy == "":
		return bad("upstream_proxy_ca_file", "set, but upstream_proxy is empty (direct)")
	}
	if err := c.checkSOCKS(); err != nil {
		return err
	}
	if c.UpstreamProxy != "" && c.UpstreamProxy != upstream.EnvMode {
		if _, err := upstream.ParseURL(c.UpstreamProxy); err != nil {
			return &config.FieldError{Key: "upstream_proxy", Err: err}
		}
	}
	if err := c.Lifecycle.Validate(); err != nil {
		return &config.FieldError{Key: "lifecycle", Err: err}
	}
	if err := c.checkSplit(); err != nil {
		return err
	}
	if err := c.CheckLogging(); err != nil {
		return err
	}
	if err := c.CheckRuntime(); err != nil {
		return err
	}
	return nil
}

var command = daemon.Command{
	Name:      "fluidity-agent",
	Summary:   "local HTTP proxy that tunnels everything to your Fluidity server",
	EnvPrefix: "FLUIDITY_AGENT_",
	Subcommands: []string{
		"service install --config FILE   (run at login, restart on failure; see service --help)",
		"service uninstall|start|stop|restart|status",
	},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cfg := defaultConfig()
	if done, code := command.Load(args, environ, &cfg, stdout, stderr); done {
		return code
	}
	log := cfg.Logger(stderr, "agent")
	defer cfg.ApplyRuntime(environ)()
	stopProfiles, err := cfg.StartProfiles(log)
	if err != nil {
		log.Error().Err(err).Msg("agent failed")
		return 1
	}
	defer stopProfiles()
	if err := serve(ctx, cfg, environ, log); err != nil {
		log.Error().Err(err).Msg("agent failed")
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg Config, environ []string, log zerolog.Logger) error {
	certs, err := tunnel.NewCertReloader(cfg.CertFile, cfg.KeyFile, cfg.CACertFile, log)
	if err != nil {
		return err
	}
	certs.SetClientSNI(cfg.ServerSNI)
	proxyTLS, err := upstreamTLS(cfg.UpstreamCA)
	if err != nil {
		return err
	}
	route, err := upstream.New(upstream.Config{
		Proxy:           cfg.UpstreamProxy,
		TLS:             proxyTLS,
		CredentialsFile: cfg.UpstreamCreds,
		Krb5Conf:        cfg.UpstreamKrb5,
		Keytab:          cfg.UpstreamKeytab,
		Environ:         environ,
		Self:            net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.LocalProxyPort)),
		Warn:            func(msg string) { log.Warn().Msg(msg) },
	})
	if err != nil {
		return err
	}
	defer route.Close()
	if route.Direct() {
		log.Info().Str("upstream", route.String()).Msg("reaching the server directly")
	} else {
		log.Info().Str("upstream", route.String()).Msg("reaching the server through an upstream proxy")
	}
	bg, stopBackground := context.WithCancel(context.Background())
	var background sync.WaitGroup
	defer func() { stopBackground(); background.Wait() }()
	if cfg.CertReload > 0 {
		background.Add(1)
		go func() {
			defer background.Done()
			certs.Run(bg, cfg.CertReload)
		}()
	}
	d := &serverDialer{cfg: cfg, certs: certs, route: route, log: log}
	st := newAgentStatus(cfg, route, log)
	obs, stopAdmin, err := admin.StartMetrics(cfg.AdminListen, metrics.Agent, log, st.routes()...)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		// The proxy is what the user needs; its cockpit must not keep it from
		// starting (a second agent on one machine, another program on the port).
		log.Warn().Err(err).Str("admin_listen", cfg.AdminListen).Msg("admin listener not started: its address is in use; metrics are off")
		obs, stopAdmin = nil, func() {}
	case err != nil:
		return err
	}
	defer stopAdmin()
	var api *lifecycle.APIClient
	if cfg.Lifecycle.Enabled() {
		api = cfg.Lifecycle.Client(apiHTTPClient(route, cfg.Lifecycle.WakeWait), log)
		wcfg := lifecycle.WakerConfig{
			PollInterval: cfg.Lifecycle.PollInterval,
			Timeout:      cfg.Lifecycle.WakeTimeout,
			Progress: func(r lifecycle.WakeResult, elapsed time.Duration) {
				log.Info().Str("state", string(r.State)).Dur("elapsed", elapsed.Round(time.Second)).Msg("waiting for the server to start")
			},
			Log: log,
		}
		if obs != nil {
			wcfg.Done = obs.ObserveWake
		}
		d.waker = lifecycle.NewWaker(api, wcfg)
		defer d.waker.Close()
	}
	ccfg := tunnel.DefaultClientConfig()
	ccfg.Logger = log
	ccfg.Session.KeepAliveInterval = cfg.KeepAlive
	ccfg.Session.WriteTimeout = cfg.WriteTimeout
	ccfg.Session.StreamWindow = cfg.StreamWindow
	ccfg.ReceiveBudget = cfg.ReceiveBudget
	ccfg.ReconnectMax = cfg.ReconnectMax
	ccfg.Sessions = cfg.Sessions
	ccfg.DialTimeout = cfg.DialTimeout
	if d.waker != nil {
		// One attempt may include a try of the old address, the whole
		// wake-up and the server's start.
		ccfg.DialTimeout = cfg.DialTimeout + cfg.Lifecycle.WakeTimeout + cfg.RetryTimeout + cfg.DialTimeout
	}
	ccfg.Dial = st.dial(d.dial)
	own := lifecycle.NewOwnSessions() // for the Kill on exit
	ccfg.Observer = metrics.CountSessions(own, st.observe(obs.Observer()))
	client, err := tunnel.NewClient(ccfg)
	if err != nil {
		return err
	}
	defer client.Close()

	pcfg := proxy.DefaultConfig()
	pcfg.Logger = log
	pcfg.MaxHeaderBytes = cfg.MaxHeaderBytes
	pcfg.IdleTimeout = cfg.IdleTimeout
	pcfg.Health = func(ctx context.Context) error {
		if d.waker != nil {
			return lifecycleHealth(ctx, client, d.waker)
		}
		_, err := client.Ping(ctx)
		return err
	}
	var tun proxy.Tunnel = client
	if d.waker != nil {
		tun = &heldTunnel{client: client, waker: d.waker, bound: cfg.Lifecycle.HoldTimeout}
	}
	px, err := proxy.New(tun, pcfg)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(cfg.ListenAddr); ip != nil && !ip.IsLoopback() {
		log.Warn().Str("listen_addr", cfg.ListenAddr).
			Msg("the proxy listens beyond this machine: anyone who can reach it can use your tunnel")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.LocalProxyPort)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	socks, err := startSOCKS(ctx, cfg, px, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer socks.Close()
	if err := st.attach(client, d.waker, api, ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	httpSrv := px.NewHTTPServer()
	runCtx, cancelRun := context.WithCancel(context.Background())
	keeper := make(chan struct{})
	go func() {
		defer close(keeper)
		if d.waker != nil {
			// The tunnel follows the server's lifecycle; only requests wake it.
			d.waker.Keep(runCtx, client, cfg.Lifecycle.WakeMode == lifecycle.WakeOnStart)
			return
		}
		_ = client.Run(runCtx)
	}()
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(px.SniffSOCKS(ln)) }()
	log.Info().Str("version", buildinfo.String()).Str("proxy", ln.Addr().String()).Str("server", d.describe()).
		Str("server_name", cfg.ServerName).Str("server_sni", cfg.ServerSNI).Str("upstream", route.String()).Msg("agent started")

	select {
	case <-ctx.Done():
	case err := <-served:
		cancelRun()
		<-keeper
		return fmt.Errorf("proxy server: %w", err)
	}
	log.Info().Dur("timeout", cfg.ShutdownTimeout).Msg("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = httpSrv.Shutdown(sctx)
	// CONNECT tunnels and WebSockets are hijacked connections that http.Server does
	// not track; give their streams the rest of the timeout.
	for err == nil && px.ActiveTunnels() > 0 {
		select {
		case <-sctx.Done():
			err = sctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn().Msg("shutdown timeout: closing remaining connections")
		_ = httpSrv.Close()
	}
	// Before the sessions close: their closing is no change the Kill Lambda
	// needs to know of (see lifecycle.OwnSessions.Use).
	use := own.Use()
	cancelRun()
	<-keeper
	_ = client.Close()
	if d.waker != nil {
		d.waker.Close()
	}
	if api != nil && cfg.Lifecycle.KillOnExit {
		kctx, kcancel := context.WithTimeout(context.Background(), 10*time.Second)
		// An agent's Kill on exit says so, with its own sessions: the Kill
		// Lambda subtracts them from those the server counted, and keeps the
		// server up while another agent uses it or a Wake is recent.
		_, err := api.KillOnExit(kctx, use)
		var refused *lifecycle.APIError
		switch {
		case errors.Is(err, lifecycle.ErrInUse) && errors.As(err, &refused):
			log.Info().Str("why", refused.Message).Int64("own_sessions", use.Sessions).Int64("steady_seconds", use.SteadySeconds).
				Msg("server left running: it is in use or was woken recently; it sleeps when idle")
		case err != nil:
			log.Warn().Err(err).Msg("could not put the server to sleep")
		default:
			log.Info().Msg("server put to sleep")
		}
		kcancel()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info().Msg("agent stopped")
	return nil
}

// apiHTTPClient is the Wake/Kill API's client: the same route as the tunnel,
// and never a proxy from the environment by accident (Proxy is nil; env mode
// is the upstream dialer's to apply).
// A Wake call may wait up to wait in the Lambda (long-poll) on top of the
// usual 30 s bound.
func apiHTTPClient(route *upstream.Dialer, wait time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = route.DialContext
	return &http.Client{Timeout: 30*time.Second + wait, Transport: tr}
}
