package tunnel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/retry"
)

// ClientConfig configures a Client. Only Dial is required: zero fields take
// their defaults (DefaultClientConfig).
type ClientConfig struct {
	Session SessionConfig
	// Logger receives session events; the zero value logs nothing.
	Logger zerolog.Logger
	// Dial establishes an authenticated connection to the server, for instance with
	// DialTLS. It is called for the first session and for every reconnect.
	Dial func(ctx context.Context) (net.Conn, error)
	// DialTimeout bounds one connection attempt. Default 15 s.
	DialTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff (with jitter) that
	// Run waits between failed attempts. Work arriving while the session is down does
	// not wait for the backoff: it triggers an attempt at once. Defaults 250 ms, 30 s.
	ReconnectMin, ReconnectMax time.Duration
	// Sessions is how many sessions, each its own connection, the client keeps to
	// the server. Every new stream goes to the one moving the fewest bytes, so a
	// request opened next to a bulk download does not queue behind the download's
	// bytes in one TCP connection (head-of-line blocking); see BENCHMARKS.md.
	// Default 2, at most MaxSessions.
	Sessions int
	// ReceiveBudget bounds the receive-window memory of all the client's streams
	// together: past it, no stream's window grows (see SessionConfig.StreamWindow).
	// Default 128 MiB.
	ReceiveBudget int64
	// Observer, if set, is told of sessions, reconnects, round trips and
	// streams (for metrics); see Observer.
	Observer *Observer
}

// MaxSessions bounds ClientConfig.Sessions.
const MaxSessions = 8

// Client defaults; see ClientConfig.
const (
	defaultDialTimeout   = 15 * time.Second
	defaultReconnectMin  = 250 * time.Millisecond
	defaultReconnectMax  = 30 * time.Second
	defaultSessions      = 2
	defaultReceiveBudget = 128 << 20
)

// DefaultClientConfig returns what a zero ClientConfig stands for; Dial must
// still be set.
func DefaultClientConfig() ClientConfig { return ClientConfig{}.withDefaults() }

func (c ClientConfig) withDefaults() ClientConfig {
	c.Session = c.Session.withDefaults()
	if c.DialTimeout == 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = defaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(defaultReconnectMax, c.ReconnectMin)
	}
	if c.Sessions == 0 {
		c.Sessions = defaultSessions
	}
	if c.ReceiveBudget == 0 {
		c.ReceiveBudget = defaultReceiveBudget
	}
	return c
}

// Validate reports the first unusable setting. Zero fields take their defaults.
func (c ClientConfig) Validate() error {
	if err := c.Session.Validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	switch {
	case c.Dial == nil:
		return errors.New("tunnel: client: Dial is required")
	case c.DialTimeout < 0:
		return errors.New("tunnel: client: dial timeout must not be negative")
	case c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin:
		return errors.New("tunnel: client: need 0 < reconnect min <= reconnect max")
	case c.Sessions < 1 || c.Sessions > MaxSessions:
		return fmt.Errorf("tunnel: client: sessions must be between 1 and %d", MaxSessions)
	case c.ReceiveBudget < minStreamWindow:
		return fmt.Errorf("tunnel: client: receive budget %d below one stream window (256 KiB)", c.ReceiveBudget)
	}
	return nil
}

// Client keeps ClientConfig.Sessions sessions to the server and reconnects as
// needed. It routes HTTP requests, CONNECT dials and WebSockets through the least
// busy live session, and is safe for concurrent use. Its DialContext fits
// http.Transport.DialContext.
type Client struct {
	cfg    ClientConfig
	log    zerolog.Logger
	budget *receiveBudget
	limit  *logLimit

	ctx    context.Context // cancelled by Close; bounds dial attempts
	cancel context.CancelFunc

	mu      sync.Mutex
	lanes   []*lane
	retired []*session // draining sessions still serving their streams
	closed  bool
	wg      sync.WaitGroup
	// up says whether a lane has a live session; changed is closed and
	// replaced whenever up flips or the client closes (WaitUp, WaitDown).
	up      bool
	changed chan struct{}
}

// lane is one of the client's sessions with its own connection attempt. Its
// fields are guarded by Client.mu.
type lane struct {
	id      int
	sess    *session
	attempt *dialAttempt
	// The load estimate: bytes per second, averaged over recent samples so that a
	// transfer pausing for one sample still counts as busy.
	sampledAt time.Time
	sampled   int64
	rate      float64
	// up: a session has been established on this lane before (a new one is
	// a reconnect).
	up bool
	// err is why the lane is down: its last connection attempt's failure, or
	// the first reason its last session failed (SessionInfo.Err).
	err error
	// refused: the server refused the agent's certificate on its last
	// session (see runLane); a sibling's success does not bring it up again
	// at once.
	refused bool
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
		// The average forgets by time, not by sample: half its weight per
		// sampleEvery, so a lane idle for a second looks idle at its next pick
		// however rarely it is picked, while one pausing for a sample still
		// looks busy.
		w := math.Exp2(-float64(dt) / float64(sampleEvery))
		l.rate = w*l.rate + (1-w)*float64(moved-l.sampled)/dt.Seconds()
		l.sampledAt, l.sampled = now, moved
	}
	return l.rate
}

type dialAttempt struct {
	done chan struct{}
	sess *session
	err  error
}

// NewClient returns a client; it connects on first use or when Run starts. It
// does not keep cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{cfg: cfg, log: cfg.Logger, budget: newReceiveBudget(cfg.ReceiveBudget), limit: newLogLimit(), ctx: ctx, cancel: cancel,
		changed: make(chan struct{})}
	for i := range cfg.Sessions {
		c.lanes = append(c.lanes, &lane{id: i})
	}
	return c, nil
}

// Ping checks the tunnel end to end: it connects if no session is up, then
// measures one round trip to the server on the least busy session. A ping
// already in flight on that session answers for this one too (yamux shares
// one among its callers, its own RTT measurement at the session's start
// included): Ping may report a round trip begun just before it was called.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	sess, err := c.session(ctx, nil)
	if err != nil {
		return 0, err
	}
	rtt, err := sess.ping(ctx)
	if err == nil {
		c.cfg.Observer.rtt(rtt)
	}
	return rtt, err
}

// ActiveStreams reports the streams open now on all the client's sessions.
func (c *Client) ActiveStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lanes {
		if l.live() {
			n += l.sess.NumStreams()
		}
	}
	for _, s := range c.retired {
		n += s.NumStreams()
	}
	return n
}

// Connect brings a session up if none is, sharing the attempt with
// concurrent work, and returns when one is up, the attempt failed or ctx
// ended.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.session(ctx, nil)
	return err
}

// Up reports whether a session is up now.
func (c *Client) Up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lanes {
		if l.live() {
			return true
		}
	}
	return false
}

// WaitUp returns once a session is up, or with ctx's error, or
// ErrSessionClosed after Close.
func (c *Client) WaitUp(ctx context.Context) error { return c.waitUp(ctx, true) }

// WaitDown returns once no session is up (a lost tunnel: the sessions ended
// or the server is draining them), or with ctx's error, or
// ErrSessionClosed after Close.
func (c *Client) WaitDown(ctx context.Context) error { return c.waitUp(ctx, false) }

func (c *Client) waitUp(ctx context.Context, want bool) error {
	for {
		c.mu.Lock()
		closed, up, changed := c.closed, c.up, c.changed
		c.mu.Unlock()
		switch {
		case closed:
			return ErrSessionClosed
		case up == want:
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// noteLocked records whether a session is up, waking WaitUp and WaitDown
// when that changed.
func (c *Client) noteLocked() {
	up := false
	for _, l := range c.lanes {
		up = up || l.live()
	}
	if up != c.up || c.closed {
		c.up = up
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// session returns want's session, or the least busy one when want is nil,
// connecting as needed. Concurrent callers share one connection attempt.
func (c *Client) session(ctx context.Context, want *lane) (*session, error) {
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
			(load == bestLoad && l.sess.NumStreams() < best.sess.NumStreams()) {
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
	var sess *session
	if err == nil {
		sess, err = newSession(conn, c.cfg.Session, c.budget, c.limit, c.cfg.Observer, c.log.With().Int("session", l.id).Logger())
	} else if errors.Is(err, context.DeadlineExceeded) && c.ctx.Err() == nil {
		err = fmt.Errorf("tunnel: no connection within the dial timeout (%v): %w", c.cfg.DialTimeout, err)
	}
	c.mu.Lock()
	l.attempt = nil
	if err == nil && c.closed {
		_ = sess.mux.Close()
		sess, err = nil, ErrSessionClosed
	}
	var old *session
	if err == nil {
		old, l.sess = l.sess, sess
		l.sampledAt = time.Time{}
		c.cfg.Observer.sessionUp()
		if l.up {
			c.cfg.Observer.reconnect()
		}
		l.up = true
		l.err = nil
		c.noteLocked()
		c.wg.Add(1)
		go c.watch(l, sess)
		// The server is reachable: bring the other lanes up too (without Run,
		// nothing else would), so that work can spread at once.
		for _, other := range c.lanes {
			if !other.live() && other.attempt == nil && !other.refused {
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
		c.mu.Lock()
		if !l.live() {
			l.err = err
		}
		c.mu.Unlock()
		c.log.Debug().Err(err).Int("session", l.id).Msg("connect failed")
	} else {
		c.log.Info().Dur("took", time.Since(start).Round(time.Millisecond)).Int("session", l.id).Msg("tunnel session established")
	}
	a.sess, a.err = sess, err
	close(a.done)
}

// watch waits for sess, l's session, to end, then forgets it if it was
// retired, and says why it ended. A session that failed, rather than being
// closed, suggests that the path to the server broke, which breaks its sibling
// sessions too: they are pinged at once instead of at their next keepalive, so
// that their work fails and reconnects together with sess's, not up to a
// keepalive later.
func (c *Client) watch(l *lane, sess *session) {
	defer c.wg.Done()
	c.sampleRTT(sess)
	<-sess.Done()
	c.cfg.Observer.sessionDown(sess.endReason())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retired = slices.DeleteFunc(c.retired, func(s *session) bool { return s == sess })
	c.noteLocked()
	if !l.live() {
		// Unless a new session is up on l already, how this one ended is
		// how l is down.
		l.refused = sess.refused()
		if sess.failed() && !c.closed {
			l.err = sess.Err()
		}
	}
	if c.closed || !sess.failed() {
		return
	}
	for _, l := range c.lanes {
		if other := l.sess; l.live() && other != sess {
			c.wg.Go(func() {
				ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.Session.WriteTimeout)
				defer cancel()
				if _, err := other.ping(ctx); err != nil && c.ctx.Err() == nil {
					_ = other.closeWith(fmt.Errorf("%w: no answer to a ping after a sibling session failed: %w", ErrSessionClosed, err))
				}
			})
		}
	}
}

// sampleRTT pings sess at once and then every KeepAliveInterval, for the
// observer, until sess ends. Without Observer.RTT it returns at once. A ping
// that fails is not reported: yamux's keepalive ends the session then.
func (c *Client) sampleRTT(sess *session) {
	if !c.cfg.Observer.wantsRTT() {
		return
	}
	t := time.NewTicker(c.cfg.Session.KeepAliveInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.Session.WriteTimeout)
		rtt, err := sess.ping(ctx)
		cancel()
		if err == nil {
			c.cfg.Observer.rtt(rtt)
		}
		select {
		case <-t.C:
		case <-sess.Done():
			return
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
	// Jitter spreads many agents' reconnects after one server restart.
	backoff := retry.NewBackoff(retry.Policy{Initial: c.cfg.ReconnectMin, Multiplier: 2, Max: c.cfg.ReconnectMax, Jitter: 0.5})
	retryLater := func(err error, msg string) error {
		wait := backoff.Next()
		c.log.Warn().Err(err).Int("session", l.id).Dur("retry_in", wait).Msg(msg)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		sess, err := c.session(ctx, l)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrSessionClosed) && c.isClosed():
			return ErrSessionClosed
		case err != nil:
			if err := retryLater(err, "tunnel down; will retry"); err != nil {
				return err
			}
			continue
		}
		select {
		case <-sess.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		if !sess.refused() {
			backoff.Reset()
			c.log.Warn().Err(sess.Err()).Int("session", l.id).Msg("tunnel session lost; reconnecting")
			continue
		}
		// With TLS 1.3 the handshake is over on this side before the server
		// checks the agent's certificate: a refusal ends the session instead
		// of failing the dial. It counts as a failed attempt, or the lane
		// would reconnect as fast as handshakes go.
		if err := retryLater(sess.Err(), "tunnel session refused; will retry"); err != nil {
			return err
		}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// withSession runs fn on the least busy session; if the server did no work on
// fn's stream (it could not be opened, or was refused or answered shutting_down),
// it tries once more on a fresh session.
// The stream is observed as one (tr), however many attempts it takes: its
// trace ends when it fails here, or when its stream closes.
func withSession[T any](c *Client, ctx context.Context, kind StreamKind, fn func(*session, *trace) (T, error)) (T, error) {
	var zero T
	tr := c.cfg.Observer.startStream(kind)
	for attempt := 0; ; attempt++ {
		sess, err := c.session(ctx, nil)
		if err != nil {
			tr.end(err, 0, 0)
			return zero, err
		}
		v, err := fn(sess, tr)
		var no *notOpenedError
		if err == nil || attempt > 0 || !errors.As(err, &no) {
			if err != nil {
				tr.end(err, 0, 0)
			}
			return v, keepOpened(err)
		}
		if no.sessionDown {
			c.retire(sess, errors.Is(err, ErrServerDraining))
		}
	}
}

// retire forgets sess if it is still a lane's session, so the next call
// reconnects. A draining session keeps serving its streams in flight until the
// server ends it; Close ends it too.
func (c *Client) retire(sess *session, draining bool) {
	c.mu.Lock()
	for _, l := range c.lanes {
		if l.sess == sess {
			l.sess = nil
		}
	}
	if draining && !c.closed && !slices.Contains(c.retired, sess) {
		c.retired = append(c.retired, sess)
	}
	c.noteLocked()
	c.mu.Unlock()
	if !draining {
		_ = sess.Close()
	}
}

// RoundTrip implements http.RoundTripper through the tunnel. It closes
// req.Body, on errors too.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := withSession(c, req.Context(), KindHTTP, func(s *session, tr *trace) (*http.Response, error) { return s.roundTrip(req, tr) })
	if err != nil && req.Body != nil {
		_ = req.Body.Close()
	}
	return resp, err
}

// DialContext opens a CONNECT stream to addr through the tunnel.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return withSession(c, ctx, KindConnect, func(s *session, tr *trace) (net.Conn, error) { return s.dialContext(ctx, network, addr, tr) })
}

type wsResult struct {
	resp *http.Response
	conn net.Conn
}

// DialWebSocket performs a WebSocket opening handshake through the tunnel. On
// 101 it returns the response and a conn carrying the raw WebSocket frames; on
// any other status it returns the response (with its body) and a nil conn.
func (c *Client) DialWebSocket(ctx context.Context, req *http.Request) (*http.Response, net.Conn, error) {
	r, err := withSession(c, ctx, KindWebSocket, func(s *session, tr *trace) (wsResult, error) {
		resp, conn, err := s.dialWebSocket(ctx, req, tr) //nolint:bodyclose // returned to DialWebSocket's caller, who owns it
		return wsResult{resp, conn}, err
	})
	return r.resp, r.conn, err
}

// Close ends every session and connection attempt, and waits for the goroutines
// the client started. It does not wait for request bodies being read from
// callers. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	sessions := c.retired
	for _, l := range c.lanes {
		sessions = append(sessions, l.sess)
		l.sess = nil
	}
	c.retired = nil
	c.noteLocked()
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

// errNotOpened marks failures before the server did any work on a stream: the
// work can safely be sent again on another session.
var errNotOpened = errors.New("tunnel: stream not opened")

type notOpenedError struct {
	err error
	// sessionDown: the session takes no more work (it ended, or the server
	// drains it), not just this stream.
	sessionDown bool
}

func (e *notOpenedError) Error() string   { return e.err.Error() }
func (e *notOpenedError) Unwrap() error   { return e.err }
func (e *notOpenedError) Is(t error) bool { return t == errNotOpened }

// notOpened marks err as a failure before any work was done, because the
// session takes no more work.
func notOpened(err error) error { return &notOpenedError{err: err, sessionDown: true} }

// streamRefused marks err as a refusal of one stream before any work was done.
func streamRefused(err error) error { return &notOpenedError{err: err} }

// keepOpened drops the mark: the work must not be sent again.
func keepOpened(err error) error {
	var n *notOpenedError
	if errors.As(err, &n) {
		return n.err
	}
	return err
}
