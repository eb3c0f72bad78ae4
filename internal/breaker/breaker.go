// Package breaker keeps one circuit breaker per target so the server stops
// hammering a destination that keeps failing and answers clients at once
// instead of making each of them wait for a dial timeout.
//
// A target is whatever key the caller passes: a host name, or a host:port so
// that a closed port does not condemn the healthy ones on the same host (the
// tunnel server's choice). The breakers themselves are
// github.com/sony/gobreaker/v2; this package adds the map of keys, bounds its
// size (targets are chosen by clients, so an unbounded map would be a
// memory-exhaustion vector), and maps the library's errors to this package's
// typed errors.
package breaker

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is matched (via errors.Is) by every *OpenError.
var ErrOpen = errors.New("breaker: circuit open")

// OpenError is returned, without calling the guarded function, while the
// breaker for Host is open or half-open with its trial requests in flight.
type OpenError struct {
	// Host is the key the breaker is kept under, normalised: a host, or a
	// host:port.
	Host string
}

func (e *OpenError) Error() string { return fmt.Sprintf("breaker: circuit open for %q", e.Host) }

// Is makes errors.Is(err, ErrOpen) true for every OpenError.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// State is the state of one target's breaker.
type State int

// Breaker states.
const (
	StateClosed State = iota
	StateHalfOpen
	StateOpen
)

func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	default:
		return fmt.Sprintf("state(%d)", int(s))
	}
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	case gobreaker.StateOpen:
		return StateOpen
	default:
		return StateClosed
	}
}

// Config tunes every target's breaker.
type Config struct {
	// ConsecutiveFailures trips the breaker when reached.
	ConsecutiveFailures uint32
	// OpenTimeout is how long the breaker stays open before allowing trial
	// requests.
	OpenTimeout time.Duration
	// HalfOpenMaxRequests is both the number of concurrent trial requests
	// allowed when half-open and the number of successes needed to close.
	HalfOpenMaxRequests uint32
	// MaxHosts bounds the number of breakers kept; beyond it the least
	// recently used healthy breaker (or, failing that, the least recently
	// used one) is dropped.
	MaxHosts int
	// IsFailure decides whether an error from the guarded function counts
	// against the target. Errors for which it returns false are ignored
	// entirely (neither success nor failure), so for example a policy refusal
	// or a client hanging up does not trip the breaker. Nil means
	// DefaultIsFailure.
	IsFailure func(error) bool
}

// DefaultIsFailure counts every error except context.Canceled, which means
// the caller gave up and says nothing about the target's health.
func DefaultIsFailure(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled)
}

// DefaultConfig returns the seed settings: open after 5 consecutive failures,
// stay open 30 s, allow 1 trial request, keep at most 10000 targets.
func DefaultConfig() Config {
	return Config{
		ConsecutiveFailures: 5,
		OpenTimeout:         30 * time.Second,
		HalfOpenMaxRequests: 1,
		MaxHosts:            10000,
		IsFailure:           DefaultIsFailure,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ConsecutiveFailures == 0:
		return errors.New("breaker: ConsecutiveFailures must be at least 1")
	case c.OpenTimeout <= 0:
		return fmt.Errorf("breaker: OpenTimeout %v must be positive", c.OpenTimeout)
	case c.HalfOpenMaxRequests == 0:
		return errors.New("breaker: HalfOpenMaxRequests must be at least 1")
	case c.MaxHosts < 1:
		return fmt.Errorf("breaker: MaxHosts %d must be at least 1", c.MaxHosts)
	}
	return nil
}

// Option customises a Set.
type Option func(*Set)

// WithOnStateChange registers a callback, e.g. for logging, run on every
// state transition, with the target's normalised key. It is called
// synchronously while the target's breaker is locked, so it must be quick and
// must not call back into the Set for the same target.
func WithOnStateChange(fn func(host string, from, to State)) Option {
	return func(s *Set) { s.onChange = fn }
}

// Set holds one breaker per target. It is safe for concurrent use.
type Set struct {
	cfg      Config
	onChange func(host string, from, to State)

	mu    sync.Mutex
	hosts map[string]*list.Element // of *entry
	lru   list.List                // front = most recently used
}

type entry struct {
	host string
	cb   *gobreaker.CircuitBreaker[struct{}]
}

// New returns a Set. Zero fields of cfg take their DefaultConfig values, so a
// partly filled Config is usable; call cfg.Validate first to reject it
// instead.
func New(cfg Config, opts ...Option) *Set {
	d := DefaultConfig()
	if cfg.ConsecutiveFailures == 0 {
		cfg.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = d.OpenTimeout
	}
	if cfg.HalfOpenMaxRequests == 0 {
		cfg.HalfOpenMaxRequests = d.HalfOpenMaxRequests
	}
	if cfg.MaxHosts < 1 {
		cfg.MaxHosts = d.MaxHosts
	}
	if cfg.IsFailure == nil {
		cfg.IsFailure = d.IsFailure
	}
	s := &Set{cfg: cfg, hosts: make(map[string]*list.Element)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Do runs fn through the breaker of host, a host or a host:port. If the
// breaker rejects the call, Do returns an *OpenError at once without calling
// fn. If ctx is already done, Do returns its error without calling fn, so an
// abandoned request cannot take a half-open trial slot. Otherwise it returns
// fn's error unchanged.
//
// The host is compared case-insensitively with any trailing dot removed, with
// or without a port: "Example.COM.:443" and "example.com:443" share a breaker,
// "example.com:80" and "example.com" each have their own.
func (s *Set) Do(ctx context.Context, host string, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	host = normalize(host)
	cb := s.get(host)
	_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, fn(ctx) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return &OpenError{Host: host}
	}
	return err
}

// State reports the current state of host's breaker (host as for Do); targets
// without a breaker are closed.
func (s *Set) State(host string) State {
	host = normalize(host)
	s.mu.Lock()
	el, ok := s.hosts[host]
	s.mu.Unlock()
	if !ok {
		return StateClosed
	}
	return fromGobreaker(el.Value.(*entry).cb.State())
}

// Len reports how many targets currently have a breaker.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hosts)
}

// normalize folds the case of a host, or of the host part of a host:port, and
// drops its trailing dot, so that every spelling of one target shares a breaker.
func normalize(key string) string {
	if h, p, err := net.SplitHostPort(key); err == nil {
		return net.JoinHostPort(strings.TrimSuffix(strings.ToLower(h), "."), p)
	}
	return strings.TrimSuffix(strings.ToLower(key), ".")
}

// evictScan limits how far from the LRU end eviction looks for a healthy
// breaker, keeping insertion O(1) even when every breaker is tripped.
const evictScan = 16

func (s *Set) get(host string) *gobreaker.CircuitBreaker[struct{}] {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.hosts[host]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*entry).cb
	}
	if len(s.hosts) >= s.cfg.MaxHosts {
		s.evictLocked()
	}
	e := &entry{host: host, cb: s.newBreaker(host)}
	s.hosts[host] = s.lru.PushFront(e)
	return e.cb
}

// evictLocked drops one breaker. A breaker that is closed with no recorded
// failures carries no information, so dropping it is free; dropping a
// tripped one would let a flood of requests to random targets reset it, so it
// goes only if no healthy one is found near the LRU end.
func (s *Set) evictLocked() {
	victim := s.lru.Back()
	el := victim
	for i := 0; el != nil && i < evictScan; i, el = i+1, el.Prev() {
		cb := el.Value.(*entry).cb
		if cb.State() == gobreaker.StateClosed && cb.Counts().ConsecutiveFailures == 0 {
			victim = el
			break
		}
	}
	if victim == nil {
		return
	}
	// A caller may still hold the evicted breaker; its result then just
	// lands on an orphan, which is harmless.
	delete(s.hosts, victim.Value.(*entry).host)
	s.lru.Remove(victim)
}

func (s *Set) newBreaker(host string) *gobreaker.CircuitBreaker[struct{}] {
	cfg := s.cfg
	st := gobreaker.Settings{
		Name:        host,
		MaxRequests: cfg.HalfOpenMaxRequests,
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= cfg.ConsecutiveFailures
		},
		// Errors that are not failures are excluded rather than counted as
		// successes: a refused or cancelled request proves nothing about the
		// host, and in half-open state exclusion frees the trial slot.
		IsExcluded: func(err error) bool { return err != nil && !cfg.IsFailure(err) },
	}
	if s.onChange != nil {
		on := s.onChange
		st.OnStateChange = func(name string, from, to gobreaker.State) {
			on(name, fromGobreaker(from), fromGobreaker(to))
		}
	}
	return gobreaker.NewCircuitBreaker[struct{}](st)
}
