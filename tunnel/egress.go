package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/breaker"
	"github.com/fluidity-tunnel/fluidity/internal/egress"
	"github.com/fluidity-tunnel/fluidity/internal/retry"
)

// EgressConfig lists the operator's exceptions to the server's built-in egress rules.
// The zero value applies the built-in deny list only: loopback, link-local (which
// includes the EC2 and ECS credential endpoints 169.254.169.254 and 169.254.170.2),
// RFC 1918 and unique-local, carrier-grade NAT, multicast, documentation and
// unspecified addresses are refused; every public address on every port is allowed.
//
// The check runs after DNS resolution, on every address a name resolves to (one
// refused address refuses the name), and the server then dials only the addresses
// it checked. Deny always wins over allow: DenyPorts/AllowPorts, then DenyHosts,
// then DenyCIDRs, then AllowHosts and AllowCIDRs, then the built-in list.
type EgressConfig struct {
	// AllowCIDRs opens ranges the built-in list refuses, e.g. "10.20.0.0/16".
	// A bare address is a single-address range.
	AllowCIDRs []string
	// DenyCIDRs refuses more ranges, public ones included.
	DenyCIDRs []string
	// AllowHosts names hosts ("intranet.example.com", or "*.corp.example" for any
	// subdomain) whose addresses skip the built-in list; DenyCIDRs still apply.
	AllowHosts []string
	// DenyHosts names hosts refused before any DNS lookup; same patterns.
	DenyHosts []string
	// AllowPorts, when not empty, is the complete set of target ports allowed.
	AllowPorts []int
	// DenyPorts refuses these ports even if AllowPorts lists them.
	DenyPorts []int
}

func (c EgressConfig) internal() egress.Config {
	return egress.Config{
		AllowCIDRs: c.AllowCIDRs,
		DenyCIDRs:  c.DenyCIDRs,
		AllowHosts: c.AllowHosts,
		DenyHosts:  c.DenyHosts,
		AllowPorts: c.AllowPorts,
		DenyPorts:  c.DenyPorts,
	}
}

// BreakerConfig tunes the circuit breaker the server keeps per target host and port:
// the dialled host:port for CONNECT and WebSocket, the URL's host and port (80 or 443
// when the URL names none) for HTTP requests, so a closed port does not make the
// same host's healthy ports answer breaker_open. All agents share each breaker. A
// breaker counts dial and transport failures only: an HTTP error status, a policy
// refusal, a name that does not exist or an agent that gives up prove nothing about
// the target and are not counted.
type BreakerConfig struct {
	// ConsecutiveFailures opens the breaker when reached.
	ConsecutiveFailures uint32
	// OpenTimeout is how long an open breaker answers breaker_open at once before it
	// lets trial requests through.
	OpenTimeout time.Duration
	// HalfOpenMaxRequests is how many trial requests may run at once, and how many
	// must succeed to close the breaker again.
	HalfOpenMaxRequests uint32
}

// RetryConfig tunes the retries the server makes where repeating cannot duplicate a
// side effect: a CONNECT or WebSocket dial that failed (nothing was sent), and an
// idempotent HTTP request without a body whose connection failed before any
// response. A policy refusal, a name that does not exist, an open breaker, a
// connection the target refused or a host or network reported unreachable is never
// retried (the last three are answered at once but still count against the target's
// breaker), and the whole sequence ends as soon as the agent aborts the stream or the
// server shuts down.
type RetryConfig struct {
	// Attempts is the number of tries including the first; 1 disables retries.
	Attempts int
	// Initial is the delay before the second attempt.
	Initial time.Duration
	// Multiplier scales the delay after each attempt.
	Multiplier float64
	// Max caps every delay.
	Max time.Duration
}

func (c RetryConfig) internal() retry.Policy {
	// The jitter, which spreads retries of many streams failing together, is
	// the retry package's default.
	p := retry.DefaultPolicy()
	p.Attempts, p.Initial, p.Multiplier, p.Max = c.Attempts, c.Initial, c.Multiplier, c.Max
	return p
}

func (c BreakerConfig) internal() breaker.Config {
	b := breaker.DefaultConfig()
	b.ConsecutiveFailures, b.OpenTimeout, b.HalfOpenMaxRequests = c.ConsecutiveFailures, c.OpenTimeout, c.HalfOpenMaxRequests
	b.IsFailure = targetFault
	return b
}

// Resolver looks up a target's addresses for the egress check. *net.Resolver
// satisfies it; tests substitute a fake.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

func defaultBreakerConfig() BreakerConfig {
	d := breaker.DefaultConfig()
	return BreakerConfig{ConsecutiveFailures: d.ConsecutiveFailures, OpenTimeout: d.OpenTimeout, HalfOpenMaxRequests: d.HalfOpenMaxRequests}
}

func defaultRetryConfig() RetryConfig {
	d := retry.DefaultPolicy()
	return RetryConfig{Attempts: d.Attempts, Initial: d.Initial, Multiplier: d.Multiplier, Max: d.Max}
}

func (c BreakerConfig) validate() error {
	if err := c.internal().Validate(); err != nil {
		return fmt.Errorf("tunnel: server: %w", err)
	}
	return nil
}

func (c RetryConfig) validate() error {
	if c.Attempts < 1 {
		// The retry package reads a negative count as unlimited; the server's
		// retries are always bounded.
		return fmt.Errorf("tunnel: server: retry attempts %d must be at least 1", c.Attempts)
	}
	if err := c.internal().Validate(); err != nil {
		return fmt.Errorf("tunnel: server: %w", err)
	}
	return nil
}

// guards holds the server's egress policy, breakers and retry policy.
type guards struct {
	policy   *egress.Policy
	breakers *breaker.Set
	retry    retry.Policy
}

func newGuards(cfg *ServerConfig, log zerolog.Logger) (*guards, error) {
	var opts []egress.Option
	if cfg.Resolver != nil {
		opts = append(opts, egress.WithResolver(cfg.Resolver))
	}
	if cfg.Dialer != nil {
		opts = append(opts, egress.WithDialer(cfg.Dialer))
	}
	policy, err := egress.New(cfg.Egress.internal(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tunnel: server: %w", err)
	}
	set := breaker.New(cfg.Breaker.internal(), breaker.WithOnStateChange(func(key string, from, to breaker.State) {
		// The key is host:port; "target" stays the host alone, as in every other
		// log line, and the port says which of its breakers changed.
		host, port, err := net.SplitHostPort(key)
		if err != nil {
			host, port = key, ""
		}
		log.Warn().Str("target", host).Str("port", port).Str("from", from.String()).Str("to", to.String()).Msg("circuit breaker")
		cfg.Observer.breakerChange(from.String(), to.String())
	}))
	return &guards{policy: policy, breakers: set, retry: cfg.Retry.internal()}, nil
}

// notTargetFault marks a failure that says nothing about the target's health (the
// agent's request body broke, the stream was aborted): not counted, not retried.
type notTargetFault struct{ err error }

func (e *notTargetFault) Error() string { return e.err.Error() }
func (e *notTargetFault) Unwrap() error { return e.err }

// targetFault reports whether err, from a dial or an HTTP exchange with a target,
// counts against the target's breaker. Policy refusals, open breakers, names that do
// not exist, malformed addresses and cancellations do not.
func targetFault(err error) bool {
	if err == nil {
		return false
	}
	var (
		nf      *notTargetFault
		dnsErr  *net.DNSError
		addrErr *net.AddrError
	)
	switch {
	case errors.As(err, &nf),
		errors.Is(err, egress.ErrRefused),
		errors.Is(err, breaker.ErrOpen),
		errors.Is(err, context.Canceled),
		errors.As(err, &dnsErr) && dnsErr.IsNotFound,
		errors.As(err, &addrErr):
		return false
	}
	return true
}

// refusedByTarget reports whether err is a definite no to a dial rather than a lost
// packet: the target's host answered with a reset (ECONNREFUSED: nothing listens on
// the port), or a router, a firewall's reject rule or the server's own routing table
// answered that the host or network cannot be reached (EHOSTUNREACH, ENETUNREACH;
// e.g. an IPv6-only name from a server without IPv6, or icmp-host-prohibited). What
// caused it does not change in the seconds a retry waits, so retrying only holds the
// agent's answer back (3 s with the seed policy, and an EHOSTUNREACH after a failed
// ARP already costs seconds per attempt). It is still the target's fault: the breaker
// counts it.
func refusedByTarget(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// retryableHTTP reports whether an idempotent, bodiless request that failed with err
// may be sent again: the failure must be a dial failure that may pass (not
// refusedByTarget) or a connection that broke before any response.
func retryableHTTP(err error) bool {
	if !targetFault(err) || refusedByTarget(err) {
		return false
	}
	var (
		op     *net.OpError
		dnsErr *net.DNSError
	)
	switch {
	case errors.As(err, &op) && op.Op == "dial",
		errors.As(err, &dnsErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}

// idempotentWithoutBody reports whether req may be repeated (RFC 9110 §9.2.2) and
// has no body whose bytes could already have gone out.
func idempotentWithoutBody(req *http.Request) bool {
	if req.ContentLength != 0 || (req.Body != nil && req.Body != http.NoBody) {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// dialTarget resolves addr, checks every address against the egress policy and
// dials the checked ones, all within DialTimeout. It is the only way the server
// reaches a target.
func (s *Server) dialTarget(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	return s.guards.policy.DialContext(ctx, network, addr)
}

// dialGuarded dials a CONNECT or WebSocket target through addr's breaker (host:port,
// so one closed port does not condemn the host; host only names the target in the
// log), retrying dial failures that may pass: nothing has been sent to the target
// yet, so a retry is always safe, but a refused connection or an unreachable host is
// answered at once (refusedByTarget).
func (s *Server) dialGuarded(ctx context.Context, log zerolog.Logger, host, addr string) (net.Conn, error) {
	var conn net.Conn
	p := s.guards.retry
	p.OnRetry = func(attempt int, err error, delay time.Duration) {
		log.Debug().Str("target", host).Int("attempt", attempt).Dur("retry_in", delay.Round(time.Millisecond)).Msg("dial failed; retrying")
	}
	// The breaker wraps the retries: one request that fails after all its attempts
	// is one failure, and an open breaker answers before any attempt or backoff.
	err := s.guards.breakers.Do(ctx, addr, func(ctx context.Context) error {
		return p.Do(ctx, func(ctx context.Context) error {
			c, err := s.dialTarget(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			conn = c
			return nil
		}, func(err error) bool { return targetFault(err) && !refusedByTarget(err) })
	})
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// roundTripGuarded makes an HTTP request through the breaker of the host and port the
// transport dials (the URL's; 80 or 443 by scheme when it names none), the breaker a
// CONNECT to that host:port shares. A request that is idempotent and has no body is
// retried when its connection failed before any response; any other request is
// sent once.
func (s *Server) roundTripGuarded(ctx context.Context, log zerolog.Logger, host string, req *http.Request, body *bodyWatch) (*http.Response, error) {
	port := req.URL.Port()
	if port == "" {
		port = "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
	}
	key := net.JoinHostPort(req.URL.Hostname(), port)
	retryable := idempotentWithoutBody(req)
	var resp *http.Response
	attempt := 0
	p := s.guards.retry
	p.OnRetry = func(attempt int, err error, delay time.Duration) {
		log.Debug().Str("target", host).Int("attempt", attempt).Dur("retry_in", delay.Round(time.Millisecond)).Msg("request failed before any response; retrying")
	}
	err := s.guards.breakers.Do(ctx, key, func(ctx context.Context) error {
		return p.Do(ctx, func(ctx context.Context) error {
			r := req
			if attempt > 0 {
				r = req.Clone(ctx)
			}
			attempt++
			// Only the attempt that succeeds sets resp, and then both Do calls
			// return nil: resp goes to the caller, who closes it.
			rr, err := s.transport.RoundTrip(r) //nolint:bodyclose // handed to the caller through resp (see above)
			if err != nil {
				if ctx.Err() != nil || (body != nil && body.failed()) {
					return &notTargetFault{err}
				}
				return err
			}
			resp = rr
			return nil
		}, func(err error) bool { return retryable && retryableHTTP(err) })
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// refusalMessage describes a policy refusal for the agent: the host and the rule,
// not the addresses the name resolved to.
func refusalMessage(err error) string {
	var re *egress.RefusedError
	if errors.As(err, &re) {
		return fmt.Sprintf("egress policy refuses %q: %s", re.Host, re.Reason)
	}
	return "egress policy refuses the target"
}

func (c BreakerConfig) withDefaults() BreakerConfig {
	d := defaultBreakerConfig()
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = d.OpenTimeout
	}
	if c.HalfOpenMaxRequests == 0 {
		c.HalfOpenMaxRequests = d.HalfOpenMaxRequests
	}
	return c
}

func (c RetryConfig) withDefaults() RetryConfig {
	d := defaultRetryConfig()
	if c.Attempts == 0 {
		c.Attempts = d.Attempts
	}
	if c.Initial == 0 {
		c.Initial = d.Initial
	}
	if c.Multiplier == 0 {
		c.Multiplier = d.Multiplier
	}
	if c.Max == 0 {
		c.Max = max(d.Max, c.Initial)
	}
	return c
}
