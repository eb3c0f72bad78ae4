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
	// Sessions is how many sessions, each its own connection, the client keeps to
	// the server. Every new stream goes to the one moving the fewest bytes, so a
	// request opened next to a bulk download does not queue behind the download's
	// bytes in one TCP connection (head-of-line blocking); see BENCHMARKS.md.
	Sessions int
}

// MaxSessions bounds ClientConfig.Sessions.
const MaxSessions = 8

// DefaultClientConfig returns the defaults; Dial must still be set.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		Session:      DefaultSessionConfig(),
		Logger:       zerolog.Nop(),
		DialTimeout:  15 * time.Second,
		ReconnectMin: 250 * time.Millisecond,
		ReconnectMax: 30 * time.Second,
		Sessions:     2,
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
	case c.Sessions < 1 || c.Sessions > MaxSessions:
		return fmt.Errorf("tunnel: client: sessions must be between 1 and %d", MaxSessions)
	}
	return nil
}

// Client keeps ClientConfig.Sessions sessions to the server and reconnects as
// needed. It routes HTTP requests, CONNECT dials and WebSockets through the least
// busy live session, and is safe for concurrent use. Its DialContext fits
// http.Transport.DialContext.
type Client struct {
	cfg ClientConfig
	log zerolog.Logger

	ctx    context.Context // cancelled by Close; bounds dial attempts
	cancel context.CancelFunc

	mu      sync.Mutex
	lanes   []*lane
	retired []*Session
	closed  bool
	wg      sync.WaitGroup
}

// lane is one of the client's sessions with its own connection attempt. Its
// fields are guarded by Client.mu.
type lane struct {
	id      int
	sess    *Session
	attempt *dialAttempt
	// The load estimate: bytes per second, averaged over recent samples so that a
	// transfer pausing for one sample still counts as busy.
	sampledAt time.Time
	sampled   int64
	rate      float64
}

// sampleEvery is how often a lane's load estimate is refreshed: long enough to
// measure a transfer, short enough to see one start.
const sampleEvery = 20 * time.Millisecond

func (l *lane) live() bool { return l.sess != nil && !l.sess.mux.IsClosed() }

// load returns l's recent bytes per second, resampled when stale.
func (l *lane) load(now time.Time) float64 {
	moved := l.sess.moved()
	switch dt := now.Sub(l.sampledAt); {
	case l.sampledAt.IsZero() || moved < l.sampled:
		l.sampledAt, l.sampled, l.rate = now, moved, 0
	case dt >= sampleEvery:
		l.rate = (l.rate + float64(moved-l.sampled)/dt.Seconds()) / 2
		l.sampledAt, l.sampled = now, moved
	}
	return l.rate
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
	c := &Client{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel}
	for i := range cfg.Sessions {
		c.lanes = append(c.lanes, &lane{id: i})
	}
	return c, nil
}

// Session returns the least busy live session, connecting if there is none.
// Concurrent callers share one connection attempt.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	return c.session(ctx, nil)
}

// session returns want's session, or the least busy one when want is nil,
// connecting as needed.
func (c *Client) session(ctx context.Context, want *lane) (*Session, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrSessionClosed
	}
	l := want
	if l == nil {
		l = c.pickLocked(time.Now())
	}
	if l.live() {
		s := l.sess
		c.mu.Unlock()
		return s, nil
	}
	a := c.connectLocked(l)
	c.mu.Unlock()
	select {
	case <-a.done:
		return a.sess, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pickLocked chooses the lane for new work: the live lane moving the fewest
// bytes (then the one with fewer streams, then the first); with none live, the
// lane already connecting, so that a burst shares one attempt; else the first.
func (c *Client) pickLocked(now time.Time) *lane {
	var best *lane
	var bestLoad float64
	for _, l := range c.lanes {
		if !l.live() {
			continue
		}
		load := l.load(now)
		if best == nil || load < bestLoad ||
			(load == bestLoad && l.sess.mux.NumStreams() < best.sess.mux.NumStreams()) {
			best, bestLoad = l, load
		}
	}
	if best != nil {
		return best
	}
	for _, l := range c.lanes {
		if l.attempt != nil {
			return l
		}
	}
	return c.lanes[0]
}

// connectLocked returns l's connection attempt, starting one if needed.
func (c *Client) connectLocked(l *lane) *dialAttempt {
	if l.attempt == nil {
		l.attempt = &dialAttempt{done: make(chan struct{})}
		c.wg.Add(1)
		go c.connect(l, l.attempt)
	}
	return l.attempt
}

func (c *Client) connect(l *lane, a *dialAttempt) {
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
	l.attempt = nil
	if err == nil && c.closed {
		_ = sess.mux.Close()
		sess, err = nil, ErrSessionClosed
	}
	var old *Session
	if err == nil {
		old, l.sess = l.sess, sess
		l.sampledAt = time.Time{}
		c.wg.Add(1)
		go c.watch(sess)
		// The server is reachable: bring the other lanes up too (without Run,
		// nothing else would), so that work can spread at once.
		for _, other := range c.lanes {
			if !other.live() && other.attempt == nil {
				c.connectLocked(other)
			}
		}
	}
	c.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrTunnelUnavailable, err)
		c.log.Debug().Err(err).Int("session", l.id).Msg("connect failed")
	} else {
		c.log.Info().Dur("took", time.Since(start)).Int("session", l.id).Msg("tunnel session established")
	}
	a.sess, a.err = sess, err
	close(a.done)
}

// watch waits for sess to end. A session that failed, rather than being closed,
// suggests that the path to the server broke, which breaks its sibling sessions
// too: they are pinged at once instead of at their next keepalive, so that their
// work fails and reconnects together with sess's, not up to a keepalive later.
func (c *Client) watch(sess *Session) {
	defer c.wg.Done()
	<-sess.Done()
	if !sess.failed() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for _, l := range c.lanes {
		if other := l.sess; l.live() && other != sess {
			c.wg.Go(func() {
				if _, err := other.mux.Ping(); err != nil {
					_ = other.closeWith(fmt.Errorf("%w: no answer to a ping after a sibling session failed: %w", ErrSessionClosed, err))
				}
			})
		}
	}
}

// Run keeps every session up until ctx ends or the client is closed: for each,
// it connects, waits for the session to end, and reconnects with exponential
// backoff and jitter. Calling Run is optional: without it the client connects on
// demand.
func (c *Client) Run(ctx context.Context) error {
	errs := make([]error, len(c.lanes))
	var wg sync.WaitGroup
	for i, l := range c.lanes {
		wg.Go(func() { errs[i] = c.runLane(ctx, l) })
	}
	wg.Wait()
	return errs[0]
}

func (c *Client) runLane(ctx context.Context, l *lane) error {
	delay := c.cfg.ReconnectMin
	for {
		sess, err := c.session(ctx, l)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrSessionClosed) && c.isClosed():
			return ErrSessionClosed
		case err != nil:
			wait := jitter(delay)
			c.log.Warn().Err(err).Int("session", l.id).Dur("retry_in", wait).Msg("tunnel down; will retry")
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
			c.log.Warn().Err(sess.Err()).Int("session", l.id).Msg("tunnel session lost; reconnecting")
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
	for _, l := range c.lanes {
		if l.sess == sess {
			l.sess = nil
		}
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

// Close ends every session and connection attempt, and waits for them.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	sessions := c.retired
	for _, l := range c.lanes {
		sessions = append(sessions, l.sess)
		l.sess = nil
	}
	c.retired = nil
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
