// Command fluidity-server is the cloud side of Fluidity: it accepts mutually
// authenticated tunnel sessions from agents and talks to the real websites for them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/admin"
	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/daemon"
	"github.com/fluidity-tunnel/fluidity/internal/egress"
	"github.com/fluidity-tunnel/fluidity/internal/metrics"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Config is server.yaml. Keys follow the seed; every key is also an environment
// variable (FLUIDITY_SERVER_<KEY>) and a flag (--key-with-dashes).
type Config struct {
	ListenAddr  string        `koanf:"listen_addr" help:"address the tunnel listener binds"`
	ListenPort  int           `koanf:"listen_port" help:"tunnel port (also the Fargate TCP health check)"`
	AdminListen string        `koanf:"admin_listen" help:"host:port of the admin listener (GET /metrics, Prometheus); empty (the default) turns it off. Never the tunnel port, nor published: keep it on loopback or a private network"`
	CertFile    string        `koanf:"cert_file" help:"server certificate (PEM), with the server name as a SAN"`
	KeyFile     string        `koanf:"key_file" help:"the server certificate's private key (PEM)"`
	CACertFile  string        `koanf:"ca_cert_file" help:"the private CA whose client certificates are accepted (PEM)"`
	CertPEM     string        `koanf:"cert_pem" help:"the server certificate itself, instead of cert_file (for secrets passed as environment variables)"`
	KeyPEM      string        `koanf:"key_pem" help:"the private key itself, instead of key_file"`
	CACertPEM   string        `koanf:"ca_cert_pem" help:"the CA certificate itself, instead of ca_cert_file"`
	CertReload  time.Duration `koanf:"cert_reload_interval" help:"how often certificate files are checked for changes and reloaded; 0 turns reloading off"`
	DenyClients []string      `koanf:"deny_clients" help:"client certificates refused, with certificate files or PEM: serial numbers in hex as openssl prints them (A8249F, a8:24:9f, 0xa8249f, serial=A8249F, leading 00 bytes allowed) or common names; doubtful entries are logged at start"`
	Decoy       bool          `koanf:"decoy" help:"answer TLS clients that present no client certificate like an ordinary HTTPS server (a plain 404, or decoy_page) instead of failing their handshake, so that a scan does not single the server out; only a verified client certificate reaches the tunnel either way. Off by default (a client without a certificate then gets the TLS alert that says so); the cloud stack turns it on"`
	DecoyPage   string        `koanf:"decoy_page" help:"with decoy on, a static page (file, at most 1 MiB, read at start) served for GET / with 200; every other path stays a 404"`
	daemon.LogSettings
	daemon.RuntimeSettings
	MaxConnections   int           `koanf:"max_connections" help:"concurrent streams over all agents; beyond it requests get 503"`
	MaxHandshakes    int           `koanf:"max_pending_handshakes" help:"connections allowed in their TLS handshake at once; beyond it a new connection pushes out the one longest without progress (accept or first byte), so idle connections cannot lock agents out"`
	MaxPerSource     int           `koanf:"max_pending_handshakes_per_source" help:"connections allowed in their TLS handshake at once from one IPv4 address or IPv6 /64; beyond it a new one pushes out that source's stalest. Behind a proxy that hides client addresses, set it to max_pending_handshakes"`
	FirstByte        time.Duration `koanf:"handshake_first_byte_timeout" help:"how long a new connection may stay silent before its TLS ClientHello; real clients send it at once"`
	HandshakeTimeout time.Duration `koanf:"handshake_timeout" help:"bound on a connection's TLS handshake"`
	MaxHeaderBytes   int           `koanf:"max_header_bytes" help:"cap on one stream's request header frame"`
	StreamWindow     uint32        `koanf:"stream_window" help:"largest receive window one stream may grow to, in bytes (windows start at 256 KiB and grow while the reader keeps up): the cap on one stream's speed, window / round-trip time"`
	ReceiveBudget    int64         `koanf:"receive_budget" help:"bytes of receive window all streams together may hold; past it no window grows"`
	HeaderTimeout    time.Duration `koanf:"header_timeout" help:"how long a new stream may take to send its request header"`
	MaxPending       int           `koanf:"max_pending_streams" help:"streams per session that may still owe their request header; more wait to be accepted"`
	DialTimeout      time.Duration `koanf:"dial_timeout" help:"bound on each dial to a target"`
	IdleTimeout      time.Duration `koanf:"idle_timeout" help:"CONNECT and WebSocket streams idle this long are closed; 0 turns it off"`
	ShutdownTimeout  time.Duration `koanf:"shutdown_timeout" help:"how long streams in flight may finish after SIGINT/SIGTERM"`
	AllowCIDRs       []string      `koanf:"allow_cidrs" help:"target networks opened despite the default refusal of loopback, link-local, private and other special-purpose ranges"`
	AllowHosts       []string      `koanf:"allow_hosts" help:"target host names (or *.suffix) opened despite the default refusal"`
	DenyCIDRs        []string      `koanf:"deny_cidrs" help:"target networks always refused"`
	DenyHosts        []string      `koanf:"deny_hosts" help:"target host names (or *.suffix) always refused"`
	EmitMetrics      bool          `koanf:"emit_metrics" help:"publish ActiveConnections, LastActivityEpochSeconds and Sessions to CloudWatch"`
	MetricsInterval  time.Duration `koanf:"metrics_interval" help:"how often metrics are published"`
	MetricsService   string        `koanf:"metrics_service" help:"value of the metrics' Service dimension: the ECS service name"`
}

func defaultConfig() Config {
	lib := tunnel.DefaultServerConfig()
	return Config{
		ListenAddr:       "0.0.0.0",
		ListenPort:       8443,
		LogSettings:      daemon.DefaultLogSettings(),
		RuntimeSettings:  daemon.DefaultRuntimeSettings(),
		MaxConnections:   100,
		MaxHandshakes:    lib.MaxPendingHandshakes,
		MaxPerSource:     lib.MaxPendingHandshakesPerSource,
		FirstByte:        lib.FirstByteTimeout,
		HandshakeTimeout: lib.HandshakeTimeout,
		MaxHeaderBytes:   tunnel.DefaultMaxHeaderSize,
		StreamWindow:     tunnel.DefaultSessionConfig().StreamWindow,
		ReceiveBudget:    tunnel.DefaultServerConfig().ReceiveBudget,
		HeaderTimeout:    tunnel.DefaultServerConfig().HeaderTimeout,
		MaxPending:       tunnel.DefaultServerConfig().MaxPendingStreams,
		CertReload:       10 * time.Second,
		DialTimeout:      10 * time.Second,
		IdleTimeout:      10 * time.Minute,
		ShutdownTimeout:  30 * time.Second,
		MetricsInterval:  60 * time.Second,
		MetricsService:   "fluidity-server",
	}
}

// Validate names the first key whose value cannot work.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &config.FieldError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	switch {
	case net.ParseIP(c.ListenAddr) == nil:
		return bad("listen_addr", "%q is not an IP address", c.ListenAddr)
	case c.ListenPort < 0 || c.ListenPort > 65535:
		return bad("listen_port", "%d is not a port", c.ListenPort)
	case c.AdminListen != "" && admin.CheckAddr(c.AdminListen) != nil:
		return bad("admin_listen", "%v", admin.CheckAddr(c.AdminListen))
	case c.AdminListen != "" && adminPort(c.AdminListen) == c.ListenPort:
		return bad("admin_listen", "must not be the tunnel port %d", c.ListenPort)
	case (c.CertFile == "") == (c.CertPEM == ""):
		return bad("cert_file", "set exactly one of cert_file and cert_pem")
	case (c.KeyFile == "") == (c.KeyPEM == ""):
		return bad("key_file", "set exactly one of key_file and key_pem")
	case (c.CACertFile == "") == (c.CACertPEM == ""):
		return bad("ca_cert_file", "set exactly one of ca_cert_file and ca_cert_pem")
	case (c.CertPEM == "") != (c.KeyPEM == "") || (c.CertPEM == "") != (c.CACertPEM == ""):
		return bad("cert_pem", "cert_pem, key_pem and ca_cert_pem go together")
	case c.CertReload < 0:
		return bad("cert_reload_interval", "must not be negative")
	case c.DecoyPage != "" && !c.Decoy:
		return bad("decoy_page", "only served with decoy on")
	case c.MaxConnections < 1:
		return bad("max_connections", "must be at least 1")
	case c.MaxHandshakes < 1:
		return bad("max_pending_handshakes", "must be at least 1")
	case c.MaxPerSource < 1:
		return bad("max_pending_handshakes_per_source", "must be at least 1")
	case c.FirstByte <= 0:
		return bad("handshake_first_byte_timeout", "must be positive")
	case c.HandshakeTimeout <= 0:
		return bad("handshake_timeout", "must be positive")
	case c.MaxHeaderBytes < 1024 || c.MaxHeaderBytes > 16<<20:
		return bad("max_header_bytes", "%d is outside [1024, 16 MiB]", c.MaxHeaderBytes)
	case c.StreamWindow < 256<<10:
		return bad("stream_window", "must be at least 262144 (256 KiB)")
	case c.ReceiveBudget < 256<<10:
		return bad("receive_budget", "must be at least 262144 (256 KiB)")
	case c.HeaderTimeout <= 0:
		return bad("header_timeout", "must be positive")
	case c.MaxPending < 1:
		return bad("max_pending_streams", "must be at least 1")
	case c.DialTimeout <= 0:
		return bad("dial_timeout", "must be positive")
	case c.IdleTimeout < 0:
		return bad("idle_timeout", "must not be negative")
	case c.ShutdownTimeout <= 0:
		return bad("shutdown_timeout", "must be positive")
	case c.EmitMetrics && c.MetricsInterval < time.Second:
		return bad("metrics_interval", "must be at least 1s")
	case c.EmitMetrics && c.MetricsService == "":
		return bad("metrics_service", "required when emit_metrics is on")
	}
	// The egress policy's own parser, one key at a time so that the error names it:
	// a bare address is a one-address range there, and host patterns are checked.
	for _, f := range []struct {
		key    string
		policy egress.Config
	}{
		{"allow_cidrs", egress.Config{AllowCIDRs: c.AllowCIDRs}},
		{"deny_cidrs", egress.Config{DenyCIDRs: c.DenyCIDRs}},
		{"allow_hosts", egress.Config{AllowHosts: c.AllowHosts}},
		{"deny_hosts", egress.Config{DenyHosts: c.DenyHosts}},
	} {
		if err := f.policy.Validate(); err != nil {
			return &config.FieldError{Key: f.key, Err: err}
		}
	}
	if err := c.CheckLogging(); err != nil {
		return err
	}
	if err := c.CheckRuntime(); err != nil {
		return err
	}
	return nil
}

// adminPort is the port of a checked admin_listen address.
func adminPort(addr string) int {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

var command = daemon.Command{
	Name:      "fluidity-server",
	Summary:   "the cloud end of the Fluidity tunnel",
	EnvPrefix: "FLUIDITY_SERVER_",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	cfg := defaultConfig()
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], environ, cfg, stdout, stderr)
	}
	if done, code := command.Load(args, environ, &cfg, stdout, stderr); done {
		return code
	}
	log := cfg.Logger(stderr, "server")
	defer cfg.ApplyRuntime(environ)()
	stopProfiles, err := cfg.StartProfiles(log)
	if err != nil {
		log.Error().Err(err).Msg("server failed")
		return 1
	}
	defer stopProfiles()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("server failed")
		return 1
	}
	return 0
}

// healthcheck exits 0 when the tunnel port accepts TCP connections on this machine.
// The container image has no shell, so the Fargate health check runs this.
func healthcheck(args, environ []string, cfg Config, stdout, stderr io.Writer) int {
	hc := command
	hc.SkipValidate = true
	if done, code := hc.Load(args, environ, &cfg, stdout, stderr); done {
		return code
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ListenPort))
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "fluidity-server: healthcheck: %v\n", err)
		return 1
	}
	_ = conn.Close()
	return 0
}

func serve(ctx context.Context, cfg Config, log zerolog.Logger) error {
	tlsCfg, stopReload, err := serverTLS(cfg, log)
	if err != nil {
		return err
	}
	defer stopReload()
	scfg := tunnel.DefaultServerConfig()
	scfg.Logger = log
	scfg.TLSConfig = tlsCfg
	scfg.MaxStreams = cfg.MaxConnections
	scfg.MaxPendingHandshakes = cfg.MaxHandshakes
	scfg.MaxPendingHandshakesPerSource = cfg.MaxPerSource
	scfg.FirstByteTimeout = cfg.FirstByte
	scfg.HandshakeTimeout = cfg.HandshakeTimeout
	scfg.Session.MaxHeaderSize = cfg.MaxHeaderBytes
	scfg.Session.StreamWindow = cfg.StreamWindow
	scfg.ReceiveBudget = cfg.ReceiveBudget
	scfg.HeaderTimeout = cfg.HeaderTimeout
	scfg.MaxPendingStreams = cfg.MaxPending
	scfg.DialTimeout = cfg.DialTimeout
	scfg.IdleTimeout = cfg.IdleTimeout
	if cfg.IdleTimeout == 0 {
		scfg.IdleTimeout = -1 // the library's zero means its default
	}
	applyEgress(&scfg, cfg)
	if scfg.Decoy, err = decoyConfig(cfg); err != nil {
		return err
	}
	obs, stopAdmin, err := admin.StartMetrics(cfg.AdminListen, metrics.Server, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	sessions := &usage.SessionCounter{} // for an agent's Kill on exit; see startMetrics
	scfg.Observer = metrics.CountSessions(sessions, obs.Observer())
	srv, err := tunnel.NewServer(scfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.ListenPort)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	stopMetrics, err := startMetrics(cfg, serverStats{srv, sessions}, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopMetrics()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }() // #nosec G118 -- ctx ending starts the graceful Shutdown below; cancelling Serve's context would cut the sessions instead
	log.Info().Str("version", buildinfo.String()).Str("listen", ln.Addr().String()).
		Int("max_connections", cfg.MaxConnections).Bool("decoy", cfg.Decoy).Msg("server started")

	select {
	case <-ctx.Done():
	case err := <-served:
		_ = srv.Close()
		return err
	}
	log.Info().Dur("timeout", cfg.ShutdownTimeout).Int64("active_streams", srv.ActiveStreams()).
		Msg("shutting down: draining streams")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("shutdown timeout: remaining streams cut")
	}
	if err := <-served; err != nil && !errors.Is(err, tunnel.ErrServerClosed) {
		return err
	}
	log.Info().Msg("server stopped")
	return nil
}
