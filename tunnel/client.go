package tunnel

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Session SessionConfig
	Logger  zerolog.Logger
	// Dial establishes an authenticated connection to the server, for instance with
	// DialTLS. It is called for the first session and for every reconnect.
	Dial func(ctx context.Context) (net.Conn, error)
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff (with jitter) that
	// Run waits between failed attempts. Work arriving while the session is down does
	// not wait for the backoff: it triggers an attempt at once.
	ReconnectMin, ReconnectMax time.Duration
}

// DefaultClientConfig returns the defaults; Dial must still be set.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		Session:      DefaultSessionConfig(),
		Logger:       zerolog.Nop(),
		DialTimeout:  15 * time.Second,
		ReconnectMin: 250 * time.Millisecond,
		ReconnectMax: 30 * time.Second,
	}
}

// Validate reports the first unusable setting.
func (c *ClientConfig) Validate() error {
	if err := c.Session.Validate(); err != nil {
		return err
	}
	switch {
	case c.Dial == nil:
		return errors.New("tunnel: client: Dial is required")
	case c.DialTimeout <= 0:
		return errors.New("tunnel: client: dial timeout must be positive")
	case c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin:
		return errors.New("tunnel: client: need 0 < reconnect min <= reconnect max")
	}
	return nil
}

// Client keeps one session to the server and reconnects as needed. It routes HTTP
// requests, CONNECT dials and WebSockets through whichever session is current, and
// is safe for concurrent use. Its DialContext fits http.Transport.DialContext.
type Client struct {
	cfg ClientConfig
	log zerolog.Logger

	ctx    context.Context // cancelled by Close; bounds dial attempts
	cancel context.CancelFunc

	mu      sync.Mutex
	sess    *Session
	attempt *dialAttempt
	retired []*Session
	closed  bool
	wg      sync.WaitGroup
}

type dialAttempt struct {
	done chan struct{}
	sess *Session
	err  error
}

// NewClient returns a client; it connects on first use or when Run starts.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel}, nil
}

// Session returns the live session, connecting if there is none. Concurrent callers
// share one connection attempt.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrSessionClosed
	}
	if c.sess != nil && !c.sess.mux.IsClosed() {
		s := c.sess
		c.mu.Unlock()
		return s, nil
	}
	a := c.attempt
	if a == nil {
		a = &dialAttempt{done: make(chan struct{})}
		c.attempt = a
		c.wg.Add(1)
		go c.connect(a)
	}
	c.mu.Unlock()
	select {
	case <-a.done:
		return a.sess, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) connect(a *dialAttempt) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	start := time.Now()
	conn, err := c.cfg.Dial(ctx)
	var sess *Session
	if err == nil {
		sess, err = NewSession(conn, c.cfg.Session, c.log)
	}
	c.mu.Lock()
	c.attempt = nil
	if err == nil && c.closed {
		_ = sess.mux.Close()
		sess, err = nil, ErrSessionClosed
	}
	var old *Session
	if err == nil {
		old, c.sess = c.sess, sess
	}
	c.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrTunnelUnavailable, err)
		c.log.Debug().Err(err).Msg("connect failed")
	} else {
		c.log.Info().Dur("took", time.Since(start)).Msg("tunnel session established")
	}
	a.sess, a.err = sess, err
	close(a.done)
}

// Run keeps a session up until ctx ends or the client is closed: it connects, waits
// for the session to end, and reconnects with exponential backoff and jitter.
// Calling Run is optional: without it the client connects on demand.
func (c *Client) Run(ctx context.Context) error {
	delay := c.cfg.ReconnectMin
	for {
		sess, err := c.Session(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrSessionClosed) && c.isClosed():
			return ErrSessionClosed
		case err != nil:
			wait := jitter(delay)
			c.log.Warn().Err(err).Dur("retry_in", wait).Msg("tunnel down; will retry")
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			delay = min(delay*2, c.cfg.ReconnectMax)
			continue
		}
		delay = c.cfg.ReconnectMin
		select {
		case <-sess.Done():
			c.log.Warn().Err(sess.Err()).Msg("tunnel session lost; reconnecting")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// jitter spreads d over [d/2, d) so that many agents do not reconnect in step.
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// withSession runs fn on the current session; if that session turns out to be dead
// before fn's stream could be opened (nothing was sent), it retries once on a fresh one.
func withSession[T any](c *Client, ctx context.Context, fn func(*Session) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		sess, err := c.Session(ctx)
		if err != nil {
			return zero, err
		}
		v, err := fn(sess)
		if err == nil || attempt > 0 || !errors.Is(err, errNotOpened) {
			return v, err
		}
		c.retire(sess, isGoAway(err))
	}
}

// retire forgets sess if it is still the current session, so the next call
// reconnects. A draining session keeps serving its streams in flight until the
// server ends it; Close ends it too.
func (c *Client) retire(sess *Session, draining bool) {
	c.mu.Lock()
	if c.sess == sess {
		c.sess = nil
	}
	if draining {
		c.retired = append(c.retired, sess)
	}
	c.mu.Unlock()
	if !draining {
		_ = sess.Close()
	}
}

// RoundTrip implements http.RoundTripper through the tunnel.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	return withSession(c, req.Context(), func(s *Session) (*http.Response, error) { return s.RoundTrip(req) })
}

// DialContext opens a CONNECT stream to addr through the tunnel.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return withSession(c, ctx, func(s *Session) (net.Conn, error) { return s.DialContext(ctx, network, addr) })
}

type wsResult struct {
	resp *http.Response
	conn net.Conn
}

// DialWebSocket performs a WebSocket handshake through the tunnel (see Session.DialWebSocket).
func (c *Client) DialWebSocket(ctx context.Context, req *http.Request) (*http.Response, net.Conn, error) {
	r, err := withSession(c, ctx, func(s *Session) (wsResult, error) {
		resp, conn, err := s.DialWebSocket(ctx, req)
		return wsResult{resp, conn}, err
	})
	return r.resp, r.conn, err
}

// Close ends the current session and any connection attempt, and waits for them.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	sessions := append(c.retired, c.sess)
	c.sess, c.retired = nil, nil
	c.mu.Unlock()
	c.cancel()
	for _, s := range sessions {
		if s != nil {
			_ = s.Close()
		}
	}
	c.wg.Wait()
	return nil
}

// errNotOpened marks failures that happened before a stream was opened: the work
// can safely be retried on another session.
var errNotOpened = errors.New("tunnel: stream not opened")

func isGoAway(err error) bool { return errors.Is(err, yamux.ErrRemoteGoAway) }
