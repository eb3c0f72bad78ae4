package usage

import "sync"

// SessionCounter counts the server's agent sessions for [MetricSessions]:
// feed it the server's tunnel.Observer SessionUp and SessionDown, and give
// the [Publisher] a [StatsSource] that also implements [SessionSource]
// through it (embed both in one struct).
//
// A datapoint counts every session up at any moment since the previous one,
// not those up at the moment of publishing: a session that came and went
// between two publications still shows, so an exiting agent can subtract
// its own sessions exactly (see lifecycle.SteadyNeeded) and nobody else's
// hides in the gap. Safe for concurrent use; the zero value is ready.
type SessionCounter struct {
	mu   sync.Mutex
	up   int64
	seen int64 // sessions up at any moment since the last TakeSessions
}

// SessionSource is implemented by a [StatsSource] that counts sessions; the
// publisher then publishes [MetricSessions] too.
type SessionSource interface {
	// TakeSessions returns the sessions up at any moment since the previous
	// call and starts the next count with those up now.
	TakeSessions() int64
	// ReturnSessions gives back a count whose publication failed, so the
	// next datapoint still counts them (some twice: a count too high only
	// keeps the server up).
	ReturnSessions(n int64)
}

// Up records a session that came up.
func (c *SessionCounter) Up() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up++
	c.seen++
}

// Down records a session that ended. A Down without an Up is ignored.
func (c *SessionCounter) Down() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up > 0 {
		c.up--
	}
}

// TakeSessions implements [SessionSource].
func (c *SessionCounter) TakeSessions() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.seen
	c.seen = c.up
	return n
}

// ReturnSessions implements [SessionSource].
func (c *SessionCounter) ReturnSessions(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen += n
}
