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

	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/fluidity-tunnel/fluidity/internal/config"
	"github.com/fluidity-tunnel/fluidity/internal/daemon"
	"github.com/fluidity-tunnel/fluidity/internal/logging"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Config is server.yaml. Keys follow the seed; every key is also an environment
// variable (FLUIDITY_SERVER_<KEY>) and a flag (--key-with-dashes).
type Config struct {
	ListenAddr      string        `koanf:"listen_addr" help:"address the tunnel listener binds"`
	ListenPort      int           `koanf:"listen_port" help:"tunnel port (also the Fargate TCP health check)"`
	CertFile        string        `koanf:"cert_file" help:"server certificate (PEM), with the server name as a SAN"`
	KeyFile         string        `koanf:"key_file" help:"the server certificate's private key (PEM)"`
	CACertFile      string        `koanf:"ca_cert_file" help:"the private CA whose client certificates are accepted (PEM)"`
	LogLevel        string        `koanf:"log_level" help:"trace, debug, info, warn or error"`
	LogFormat       string        `koanf:"log_format" help:"json, or console for people"`
	MaxConnections  int           `koanf:"max_connections" help:"concurrent streams over all agents; beyond it requests get 503"`
	DialTimeout     time.Duration `koanf:"dial_timeout" help:"bound on each dial to a target"`
	IdleTimeout     time.Duration `koanf:"idle_timeout" help:"CONNECT and WebSocket streams idle this long are closed"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout" help:"how long streams in flight may finish after SIGINT/SIGTERM"`
	AllowCIDRs      []string      `koanf:"allow_cidrs" help:"target networks opened despite the default refusal of loopback, link-local and private ranges"`
	AllowHosts      []string      `koanf:"allow_hosts" help:"target host names (or *.suffix) opened despite the default refusal"`
	DenyCIDRs       []string      `koanf:"deny_cidrs" help:"target networks always refused"`
	DenyHosts       []string      `koanf:"deny_hosts" help:"target host names (or *.suffix) always refused"`
	EmitMetrics     bool          `koanf:"emit_metrics" help:"publish ActiveConnections and LastActivityEpochSeconds to CloudWatch"`
	MetricsInterval time.Duration `koanf:"metrics_interval" help:"how often metrics are published"`
}

func defaultConfig() Config {
	return Config{
		ListenAddr:      "0.0.0.0",
		ListenPort:      8443,
		LogLevel:        "info",
		LogFormat:       "json",
		MaxConnections:  100,
		DialTimeout:     10 * time.Second,
		IdleTimeout:     10 * time.Minute,
		ShutdownTimeout: 30 * time.Second,
		MetricsInterval: 60 * time.Second,
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
	case c.CertFile == "":
		return bad("cert_file", "required")
	case c.KeyFile == "":
		return bad("key_file", "required")
	case c.CACertFile == "":
		return bad("ca_cert_file", "required")
	case c.MaxConnections < 1:
		return bad("max_connections", "must be at least 1")
	case c.DialTimeout <= 0:
		return bad("dial_timeout", "must be positive")
	case c.IdleTimeout < 0:
		return bad("idle_timeout", "must not be negative")
	case c.ShutdownTimeout <= 0:
		return bad("shutdown_timeout", "must be positive")
	case c.EmitMetrics && c.MetricsInterval < time.Second:
		return bad("metrics_interval", "must be at least 1s")
	}
	for _, cidr := range append(append([]string{}, c.AllowCIDRs...), c.DenyCIDRs...) {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			key := "allow_cidrs"
			if contains(c.DenyCIDRs, cidr) {
				key = "deny_cidrs"
			}
			return bad(key, "%q is not a CIDR", cidr)
		}
	}
	if _, err := logging.New(io.Discard, c.LogLevel, "json"); err != nil {
		return bad("log_level", "%v", err)
	}
	if _, err := logging.New(io.Discard, "info", c.LogFormat); err != nil {
		return bad("log_format", "%v", err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
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
	if done, code := command.Load(args, environ, &cfg, stdout, stderr); done {
		return code
	}
	log, _ := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	log = log.With().Str("component", "server").Logger()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("server failed")
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg Config, log zerolog.Logger) error {
	tlsCfg, err := tunnel.LoadServerTLSConfig(cfg.CertFile, cfg.KeyFile, cfg.CACertFile)
	if err != nil {
		return err
	}
	scfg := tunnel.DefaultServerConfig()
	scfg.Logger = log
	scfg.TLSConfig = tlsCfg
	scfg.MaxStreams = cfg.MaxConnections
	scfg.DialTimeout = cfg.DialTimeout
	scfg.IdleTimeout = cfg.IdleTimeout
	applyEgress(&scfg, cfg)
	srv, err := tunnel.NewServer(scfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenAddr, strconv.Itoa(cfg.ListenPort)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	log.Info().Str("version", buildinfo.String()).Str("listen", ln.Addr().String()).
		Int("max_connections", cfg.MaxConnections).Msg("server started")

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
