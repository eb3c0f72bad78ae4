// Package status gathers what a person wants to know about a running agent,
// from small providers the agent wires in, into one Snapshot: the tunnel's
// state and why, the route to the server, the sessions with their round
// trips, the streams and bytes moving, and recent errors by code. The admin
// listener serves it as a page (GET /) and as JSON (GET /status.json); the
// fluidity CLI prints it.
//
// Nothing here carries a URL, a path or a target: errors are counted by the
// tunnel's outcome codes, as the metrics are.
package status

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// State is the tunnel's state as a person would put it.
type State string

// The states.
const (
	// StateConnected: at least one session to the server is up.
	StateConnected State = "connected"
	// StateConnecting: the first connection is being made.
	StateConnecting State = "connecting"
	// StateReconnecting: the sessions were up and are being re-established.
	StateReconnecting State = "reconnecting"
	// StateAsleep: the server sleeps; the agent wakes it with the next
	// request (or the "wake now" button).
	StateAsleep State = "asleep"
	// StateWaking: a wake-up is in flight: the control plane is starting the
	// server.
	StateWaking State = "waking"
	// StateIdle: not connected, and nothing tried yet: the agent connects on
	// the first request.
	StateIdle State = "idle"
	// StateError: the last attempt to reach the server failed (Reason says
	// why); the agent keeps trying.
	StateError State = "error"
)

// Snapshot is the agent's status at one moment. Its JSON is /status.json.
type Snapshot struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version,omitempty"`
	// Up reports whether the tunnel can carry requests now (or will bring
	// itself up for the next one: idle, asleep).
	Up     bool   `json:"up"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Since is when the tunnel entered State (connected since, down since).
	Since time.Time `json:"since,omitzero"`
	// Route is how the agent reaches the server: "direct", or the upstream
	// proxy without credentials.
	Route  string `json:"route"`
	Proxy  string `json:"proxy,omitempty"`  // the local proxy's address
	Server string `json:"server,omitempty"` // where the server is dialled
	// Wake is the lifecycle's state; nil when no lifecycle API is configured.
	Wake *Wake `json:"wake,omitempty"`
	// Actions reports whether the page offers wake and sleep.
	Actions    bool      `json:"actions"`
	LastAction *Action   `json:"last_action,omitempty"`
	Sessions   []Session `json:"sessions"`
	Streams    Streams   `json:"streams"`
	Traffic    Traffic   `json:"traffic"`
	// Errors counts streams that failed, by code, newest first.
	Errors []ErrorCount `json:"errors"`
}

// Wake describes the lifecycle: the control plane's view of the server.
type Wake struct {
	// State is the state Wake reported last (sleeping, starting, running,
	// stopping, failed); empty before the first answer.
	State string `json:"state,omitempty"`
	// Waking reports whether a wake-up is in flight, begun at Since.
	Waking         bool      `json:"waking"`
	Since          time.Time `json:"since,omitzero"`
	ElapsedSeconds float64   `json:"elapsed_seconds,omitempty"`
	// Error is the last wake-up's failure.
	Error   string `json:"error,omitempty"`
	Address string `json:"address,omitempty"`
}

// Action is the last wake or sleep asked for from the page or the CLI.
type Action struct {
	Name   string    `json:"name"` // wake or sleep
	Time   time.Time `json:"time"`
	Result string    `json:"result"` // the state the API answered, or the error
	OK     bool      `json:"ok"`
}

// Session is one of the tunnel's connections to the server.
type Session struct {
	ID         int       `json:"id"`
	Up         bool      `json:"up"`
	Connecting bool      `json:"connecting,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	RTTMillis  float64   `json:"rtt_ms,omitempty"`
	Streams    int       `json:"streams"`
	Sent       int64     `json:"sent_bytes"`
	Received   int64     `json:"received_bytes"`
	// Error is why the session is down, when it is (tunnel.SessionInfo.Err).
	Error string `json:"error,omitempty"`
}

// Streams counts the streams (requests, CONNECT tunnels, WebSockets).
type Streams struct {
	Active int            `json:"active"`
	ByKind map[string]int `json:"active_by_kind"`
	Total  int64          `json:"total"`
}

// Traffic is the bytes the tunnel's connections move: now (over the last
// few seconds) and in total since the agent started.
type Traffic struct {
	SentPerSecond     float64 `json:"sent_bytes_per_second"`
	ReceivedPerSecond float64 `json:"received_bytes_per_second"`
	// WindowSeconds is the time the rates were measured over: since an
	// earlier Snapshot, ideally rateWindow ago. 0 means not measured (the
	// first Snapshot in a while): ask again a moment later.
	WindowSeconds float64 `json:"window_seconds"`
	Sent          int64   `json:"sent_bytes"`
	Received      int64   `json:"received_bytes"`
}

// ErrorCount is the streams that ended with one code.
type ErrorCount struct {
	Code string `json:"code"`
	// Recent counts the last RecentWindow; Total since the agent started.
	Recent int64     `json:"recent"`
	Total  int64     `json:"total"`
	Last   time.Time `json:"last"`
}

// RecentWindow is how far back ErrorCount.Recent looks.
const RecentWindow = 15 * time.Minute

// Sources are the providers a Tracker reads; set once with Tracker.Attach.
type Sources struct {
	Version string
	Proxy   string
	Server  string
	Route   string
	// Sessions lists the tunnel's sessions (tunnel.Client.Sessions).
	Sessions func() []tunnel.SessionInfo
	// Wake reports the lifecycle's state; nil when none is configured.
	Wake func() Wake
	// OnDemand: the tunnel is brought up by the first request.
	OnDemand bool
}

// Tracker follows the tunnel through its Observer and Dial, and makes
// Snapshots. The zero value is not usable: use NewTracker.
type Tracker struct {
	now func() time.Time

	mu       sync.Mutex
	src      Sources
	dialing  int
	lastDial dialResult
	everUp   bool
	// lost is why the last session ended, and when.
	lost     string
	lostAt   time.Time
	active   map[tunnel.StreamKind]int
	total    int64
	errs     map[tunnel.ErrorCode]*errorLog
	banked   map[int]laneBytes // per lane, the bytes counted of its current session
	sent     int64             // bytes of sessions no longer up, plus banked
	received int64
	samples  []sample
	action   *Action
}

type dialResult struct {
	at  time.Time
	err error
}

type laneBytes struct {
	since          time.Time
	sent, received int64
}

type sample struct {
	at             time.Time
	sent, received int64
}

// errorLog counts one code: in total, and per minute for RecentWindow.
type errorLog struct {
	total   int64
	last    time.Time
	minutes [int(RecentWindow / time.Minute)]struct {
		minute int64 // Unix minute the slot counts
		n      int64
	}
}

func (e *errorLog) add(t time.Time) {
	e.total++
	e.last = t
	m := t.Unix() / 60
	slot := &e.minutes[m%int64(len(e.minutes))]
	if slot.minute != m {
		slot.minute, slot.n = m, 0
	}
	slot.n++
}

func (e *errorLog) recent(t time.Time) int64 {
	now := t.Unix() / 60
	var n int64
	for _, s := range e.minutes {
		if now-s.minute < int64(len(e.minutes)) {
			n += s.n
		}
	}
	return n
}

// NewTracker returns a tracker with no sources yet.
func NewTracker() *Tracker {
	return &Tracker{
		now:    time.Now,
		active: map[tunnel.StreamKind]int{},
		errs:   map[tunnel.ErrorCode]*errorLog{},
		banked: map[int]laneBytes{},
	}
}

// Attach sets the sources, once the tunnel client exists.
func (t *Tracker) Attach(src Sources) {
	t.mu.Lock()
	t.src = src
	t.mu.Unlock()
}

// Observer returns an Observer that tells t of streams and sessions, then
// next (which may be nil: the metrics may be off).
func (t *Tracker) Observer(next *tunnel.Observer) *tunnel.Observer {
	o := &tunnel.Observer{}
	if next != nil {
		*o = *next
	}
	o.StreamStart = func(k tunnel.StreamKind) {
		t.mu.Lock()
		t.active[k]++
		t.total++
		t.mu.Unlock()
		if next != nil && next.StreamStart != nil {
			next.StreamStart(k)
		}
	}
	o.StreamEnd = func(s tunnel.StreamStats) {
		t.mu.Lock()
		if s.Kind != "" && t.active[s.Kind] > 0 {
			t.active[s.Kind]--
		}
		if s.Code != tunnel.OutcomeOK && s.Code != tunnel.OutcomeCanceled {
			e := t.errs[s.Code]
			if e == nil {
				e = &errorLog{}
				t.errs[s.Code] = e
			}
			e.add(t.now())
		}
		t.mu.Unlock()
		if next != nil && next.StreamEnd != nil {
			next.StreamEnd(s)
		}
	}
	o.SessionDown = func(reason string) {
		t.mu.Lock()
		t.lost, t.lostAt = reason, t.now()
		t.mu.Unlock()
		if next != nil && next.SessionDown != nil {
			next.SessionDown(reason)
		}
	}
	return o
}

// Dial wraps a tunnel's Dial, to know when connection attempts run and why
// the last one failed.
func (t *Tracker) Dial(dial func(context.Context) (net.Conn, error)) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		t.mu.Lock()
		t.dialing++
		t.mu.Unlock()
		conn, err := dial(ctx)
		t.mu.Lock()
		t.dialing--
		t.lastDial = dialResult{at: t.now(), err: err}
		t.mu.Unlock()
		return conn, err
	}
}

// RecordAction remembers the last wake or sleep asked for.
func (t *Tracker) RecordAction(a Action) {
	t.mu.Lock()
	t.action = &a
	t.mu.Unlock()
}

// rateWindow is what "now" means for throughput: the bytes moved over about
// the last few seconds.
const (
	rateWindow   = 3 * time.Second
	sampleEvery  = 500 * time.Millisecond
	samplesKept  = 30 * time.Second
	staleSamples = 60 * time.Second
)

// Snapshot describes the agent now.
func (t *Tracker) Snapshot() Snapshot {
	var sessions []tunnel.SessionInfo
	var wake *Wake
	t.mu.Lock()
	src := t.src
	t.mu.Unlock()
	// Providers take their own locks: call them without t's.
	if src.Sessions != nil {
		sessions = src.Sessions()
	}
	if src.Wake != nil {
		w := src.Wake()
		wake = &w
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	s := Snapshot{
		Time: now, Version: src.Version, Route: src.Route, Proxy: src.Proxy, Server: src.Server,
		Wake: wake, Actions: src.Wake != nil, LastAction: t.action,
		Sessions: []Session{}, Errors: []ErrorCount{},
		Streams: Streams{ByKind: map[string]int{}, Total: t.total},
	}
	if wake != nil && wake.Waking && !wake.Since.IsZero() {
		wake.ElapsedSeconds = now.Sub(wake.Since).Round(time.Second).Seconds()
	}
	for k, n := range t.active {
		s.Streams.ByKind[string(k)] = n
		s.Streams.Active += n
	}
	s.Traffic = t.trafficLocked(now, sessions)
	up := 0
	var earliest time.Time
	var laneErr error
	for _, si := range sessions {
		ss := Session{
			ID: si.ID, Up: si.Up, Connecting: si.Connecting, Since: si.Since,
			RTTMillis: float64(si.RTT.Microseconds()) / 1000, Streams: si.Streams,
			Sent: si.Sent, Received: si.Received,
		}
		if si.Err != nil {
			ss.Error = si.Err.Error()
			if laneErr == nil {
				laneErr = si.Err
			}
		}
		s.Sessions = append(s.Sessions, ss)
		if si.Up {
			up++
			if earliest.IsZero() || si.Since.Before(earliest) {
				earliest = si.Since
			}
		}
	}
	if up > 0 {
		t.everUp = true
	}
	s.State, s.Reason, s.Since = t.stateLocked(up, earliest, wake, src.OnDemand, laneErr)
	s.Up = s.State == StateConnected || s.State == StateIdle || s.State == StateAsleep
	for code, e := range t.errs {
		s.Errors = append(s.Errors, ErrorCount{Code: string(code), Recent: e.recent(now), Total: e.total, Last: e.last})
	}
	slices.SortFunc(s.Errors, func(a, b ErrorCount) int { return b.Last.Compare(a.Last) })
	return s
}

// stateLocked decides the state from the sessions up, the wake-up and the
// connection attempts; laneErr is why a session is down (the client's own
// account, which names a certificate the server refused after a dial that
// succeeded).
func (t *Tracker) stateLocked(up int, upSince time.Time, wake *Wake, onDemand bool, laneErr error) (State, string, time.Time) {
	if up > 0 {
		return StateConnected, "", upSince
	}
	down := t.lostAt
	reason := ""
	switch {
	case t.lastDial.err != nil:
		reason = t.lastDial.err.Error()
	case laneErr != nil:
		reason = laneErr.Error()
	case t.lost != "":
		reason = "session ended: " + t.lost
	}
	asleep := wake != nil && (wake.State == "sleeping" || wake.State == "stopping")
	switch {
	case wake != nil && wake.Waking:
		r := "the server is starting"
		if wake.State != "" {
			r = "the control plane reports the server " + wake.State
		}
		return StateWaking, r, wake.Since
	case wake != nil && wake.Error != "" && t.dialing == 0:
		return StateError, wake.Error, t.lastDial.at
	case t.dialing > 0 && t.everUp:
		return StateReconnecting, reason, down
	case t.dialing > 0:
		return StateConnecting, reason, time.Time{}
	case asleep:
		return StateAsleep, "the server sleeps; the next request wakes it", time.Time{}
	case t.lastDial.err != nil && t.everUp && !onDemand:
		return StateReconnecting, reason, down
	case t.lastDial.err != nil:
		return StateError, reason, t.lastDial.at
	case onDemand && wake != nil && wake.State == "":
		return StateAsleep, "the server may be asleep; the next request wakes it", time.Time{}
	case onDemand:
		r := "not connected; the next request connects"
		if t.lost != "" {
			r = "session ended (" + t.lost + "); the next request connects"
		}
		return StateIdle, r, down
	case t.everUp:
		return StateReconnecting, reason, down
	}
	return StateConnecting, reason, time.Time{}
}

// trafficLocked adds the sessions' bytes to the totals and measures the rate.
// A lane whose session changed since the last look starts a new count; the
// bytes its old session moved after that look are not counted.
func (t *Tracker) trafficLocked(now time.Time, sessions []tunnel.SessionInfo) Traffic {
	for _, si := range sessions {
		prev, ok := t.banked[si.ID]
		switch {
		case !si.Up:
			delete(t.banked, si.ID)
			continue
		case !ok || !prev.since.Equal(si.Since):
			prev = laneBytes{since: si.Since}
		}
		t.sent += si.Sent - prev.sent
		t.received += si.Received - prev.received
		t.banked[si.ID] = laneBytes{since: si.Since, sent: si.Sent, received: si.Received}
	}
	tr := Traffic{Sent: t.sent, Received: t.received}
	// Keep a sample every sampleEvery for samplesKept; "now" is measured
	// against the oldest sample within rateWindow, or the newest before it.
	if n := len(t.samples); n == 0 || now.Sub(t.samples[n-1].at) >= sampleEvery {
		t.samples = append(t.samples, sample{at: now, sent: t.sent, received: t.received})
	}
	t.samples = slices.DeleteFunc(t.samples, func(s sample) bool { return now.Sub(s.at) > samplesKept })
	var base *sample
	for i := range t.samples {
		s := &t.samples[i]
		age := now.Sub(s.at)
		if age >= rateWindow {
			base = s // the newest sample at least rateWindow old
			continue
		}
		if base == nil && age >= time.Second/10 {
			base = s // none so old: the oldest of a moment ago
		}
		break
	}
	if base != nil && now.Sub(base.at) <= staleSamples {
		dt := now.Sub(base.at)
		tr.WindowSeconds = dt.Seconds()
		tr.SentPerSecond = float64(t.sent-base.sent) / dt.Seconds()
		tr.ReceivedPerSecond = float64(t.received-base.received) / dt.Seconds()
	}
	return tr
}

// ErrNoLifecycle answers wake and sleep when no lifecycle API is configured.
var ErrNoLifecycle = errors.New("status: no lifecycle API is configured (lifecycle.api_endpoint)")
