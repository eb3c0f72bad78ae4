package lifecycle

import (
	"sync"
	"time"
)

// KillWindow is how far back the Kill Lambda looks at the server's Sessions
// datapoints when an agent's Kill on exit asks whether someone else uses the
// server: two of the server's metrics intervals (a datapoint may lag that
// long) plus the statistics period a datapoint is stamped with (its start).
// The newest datapoint the server has published therefore lies in it.
func KillWindow(metricsInterval, period time.Duration) time.Duration {
	return 2*metricsInterval + period
}

// SteadyNeeded is how long an exiting agent's own sessions must have stayed
// the same (none up, none down) for the Kill Lambda to subtract them from the
// server's count: a Sessions datapoint in the [KillWindow] counts every
// session up at any moment of its metrics interval, which may have begun one
// interval before the window. Over that span the agent's share of every such
// datapoint is then exactly its [AgentUse.Sessions], so a datapoint above it
// is another agent, and one at or below it is nobody else.
func SteadyNeeded(metricsInterval, period time.Duration) time.Duration {
	return KillWindow(metricsInterval, period) + metricsInterval
}

// AgentUse is what an exiting agent reports of its own use of the server in
// its Kill on exit ([KillRequest.Own]), for the Kill Lambda to tell its
// sessions apart from another agent's in the server's count.
type AgentUse struct {
	// Sessions is how many tunnel sessions the agent had up when it began
	// to close them.
	Sessions int64 `json:"sessions"`
	// SteadySeconds is how long, until then, no session of the agent had
	// come up or gone down (whole seconds, rounded down).
	SteadySeconds int64 `json:"steady_seconds"`
}

// OwnSessions follows an agent's own tunnel sessions for its Kill on exit:
// how many are up, and since when none came up or went down. Feed it the
// client's tunnel.Observer SessionUp and SessionDown. Use [NewOwnSessions];
// the zero value works but reports no steady time. Safe for concurrent use.
type OwnSessions struct {
	mu      sync.Mutex
	up      int64
	changed time.Time // the last Up or Down; the start when there was none
}

// NewOwnSessions returns a tracker whose steady time runs from now: an agent
// that never connected has been steady, with no session, since it started.
func NewOwnSessions() *OwnSessions { return &OwnSessions{changed: time.Now()} }

// Up records a session that came up.
func (o *OwnSessions) Up() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.up++
	o.changed = time.Now()
}

// Down records a session that went down. A Down without an Up is ignored.
func (o *OwnSessions) Down() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.up == 0 {
		return
	}
	o.up--
	o.changed = time.Now()
}

// Use reports the sessions up now and how long they have been steady. The
// agent calls it just before it closes its sessions: their closing is not a
// change the Lambda needs to know of (each still counts in the datapoint of
// the interval it closed in).
func (o *OwnSessions) Use() AgentUse {
	o.mu.Lock()
	defer o.mu.Unlock()
	u := AgentUse{Sessions: o.up}
	if !o.changed.IsZero() {
		u.SteadySeconds = int64(time.Since(o.changed) / time.Second)
	}
	return u
}
