package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// serverTLS builds the tunnel's TLS configuration from files (reloaded when they
// change) or from PEM text (set once, as secrets passed in the environment are);
// either way with the deny list, whose doubtful entries it logs.
func serverTLS(cfg Config, log zerolog.Logger) (*tls.Config, func(), error) {
	// Validate has checked that the PEM settings come together.
	if cfg.CertPEM != "" {
		r, err := tunnel.NewCertReloaderFromPEM([]byte(cfg.CertPEM), []byte(cfg.KeyPEM), []byte(cfg.CACertPEM), log)
		if err != nil {
			return nil, nil, fmt.Errorf("cert_pem, key_pem, ca_cert_pem: %w", err)
		}
		return r.ServerTLSConfig(cfg.DenyClients), func() {}, nil
	}
	r, err := tunnel.NewCertReloader(cfg.CertFile, cfg.KeyFile, cfg.CACertFile, log)
	if err != nil {
		return nil, nil, err
	}
	stop := func() {}
	if cfg.CertReload > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Run(ctx, cfg.CertReload)
		}()
		stop = func() { cancel(); wg.Wait() }
	}
	return r.ServerTLSConfig(cfg.DenyClients), stop, nil
}

// startMetrics publishes ActiveConnections, LastActivityEpochSeconds and
// Sessions to CloudWatch when emit_metrics is on: at start, every
// metrics_interval, at once when the server goes from idle to active (looked
// at every second, so the Sleep policy never acts on an idle datapoint older
// than the first request after a quiet spell), and once more at shutdown.
// Sessions, every agent session up at any moment of the interval, is what an
// agent's Kill on exit is decided on (fargate.ExitPolicy). AWS settings come
// from the standard SDK chain (task role, AWS_REGION, AWS_ENDPOINT_URL, profiles).
func startMetrics(cfg Config, src serverStats, log zerolog.Logger) (func(), error) {
	if !cfg.EmitMetrics {
		return func() {}, nil
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		return nil, fmt.Errorf("metrics: aws config: %w", err)
	}
	pcfg := usage.DefaultPublisherConfig()
	pcfg.Service = cfg.MetricsService
	pcfg.Interval = cfg.MetricsInterval
	pcfg.Watch = min(usage.DefaultWatch, cfg.MetricsInterval)
	pub, err := usage.NewPublisherFromConfig(awsCfg, pcfg, src, log.With().Str("component", "metrics").Logger())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pub.Run(ctx)
	}()
	log.Info().Str("service", cfg.MetricsService).Dur("interval", cfg.MetricsInterval).Dur("watch", pcfg.Watch).Msg("publishing metrics")
	return func() { cancel(); <-done }, nil
}

// serverStats is what the metrics publisher reads: the server's streams and
// activity, and the sessions its observer counted.
type serverStats struct {
	*tunnel.Server
	*usage.SessionCounter
}
