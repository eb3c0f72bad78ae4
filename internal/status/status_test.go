package status

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// fakeClock is a Tracker's clock under the test's control.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newFakeTracker() (*Tracker, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	tr := NewTracker()
	tr.now = c.now
	return tr, c
}

var (
	errDial        = errors.New("dial tcp 192.0.2.1:8443: connect: connection refused")
	errRefusedCert = fmt.Errorf("%w: remote error: tls: unknown certificate authority", tunnel.ErrClientCertificate)
)

// TestState: the state a person is shown, from the sessions up, the
// connection attempts, the last session's end and the lifecycle.
func TestState(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		up       int
		dialing  int
		lastErr  error
		everUp   bool
		lost     string
		laneErr  error
		wake     *Wake
		onDemand bool
		want     State
		reason   string
	}{
		{name: "up", up: 1, want: StateConnected},
		{name: "up while waking", up: 1, wake: &Wake{Waking: true}, want: StateConnected},
		{name: "first connection", dialing: 1, want: StateConnecting},
		{name: "nothing yet, on start", want: StateConnecting},
		{name: "first connection failed", lastErr: errDial, want: StateError, reason: errDial.Error()},
		{name: "lost, redialling", dialing: 1, everUp: true, lost: "keepalive_timeout", want: StateReconnecting, reason: "session ended: keepalive_timeout"},
		{name: "lost, redial failed, backing off", everUp: true, lastErr: errDial, want: StateReconnecting, reason: errDial.Error()},
		// The dial succeeded; the server refused the certificate afterwards.
		{name: "certificate refused", everUp: true, lost: "error", laneErr: errRefusedCert, want: StateReconnecting, reason: errRefusedCert.Error()},
		{name: "on demand, untouched", onDemand: true, want: StateIdle},
		{name: "on demand, lifecycle not asked", onDemand: true, wake: &Wake{}, want: StateAsleep},
		{name: "server sleeping", wake: &Wake{State: "sleeping"}, want: StateAsleep},
		{name: "waking", dialing: 1, wake: &Wake{Waking: true, State: "starting", Since: t0}, want: StateWaking, reason: "the control plane reports the server starting"},
		{name: "wake failed", wake: &Wake{Error: "lifecycle api: status 403: Forbidden"}, want: StateError, reason: "lifecycle api: status 403: Forbidden"},
		{name: "wake failed, retrying", dialing: 1, everUp: true, wake: &Wake{Error: "x"}, want: StateReconnecting},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, _ := newFakeTracker()
			tr.dialing, tr.everUp, tr.lost = c.dialing, c.everUp, c.lost
			if c.lastErr != nil {
				tr.lastDial = dialResult{at: t0, err: c.lastErr}
			}
			got, reason, _ := tr.stateLocked(c.up, t0, c.wake, c.onDemand, c.laneErr)
			if got != c.want {
				t.Errorf("state %q, want %q", got, c.want)
			}
			if c.reason != "" && reason != c.reason {
				t.Errorf("reason %q, want %q", reason, c.reason)
			}
		})
	}
}

// TestSnapshotCounts: streams by kind, errors by code (ok and canceled are
// not errors), and what reaches the next observer.
func TestSnapshotCounts(t *testing.T) {
	tr, clock := newFakeTracker()
	var nextStarts, nextEnds int
	next := &tunnel.Observer{
		StreamStart: func(tunnel.StreamKind) { nextStarts++ },
		StreamEnd:   func(tunnel.StreamStats) { nextEnds++ },
		RTT:         func(time.Duration) {},
	}
	o := tr.Observer(next)
	if o.RTT == nil {
		t.Error("the next observer's RTT was dropped (it turns on keepalive pings)")
	}
	o.StreamStart(tunnel.KindHTTP)
	o.StreamStart(tunnel.KindConnect)
	o.StreamStart(tunnel.KindConnect)
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindConnect, Code: tunnel.CodeDNS})
	clock.advance(20 * time.Minute)
	o.StreamStart(tunnel.KindHTTP)
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindHTTP, Code: tunnel.CodeDNS})
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindHTTP, Code: tunnel.OutcomeOK})
	o.StreamStart(tunnel.KindConnect)
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindConnect, Code: tunnel.OutcomeCanceled})
	o.StreamEnd(tunnel.StreamStats{Code: tunnel.CodeOverCapacity}) // refused before its kind
	s := tr.Snapshot()
	if s.Streams.Active != 1 || s.Streams.ByKind["connect"] != 1 || s.Streams.Total != 5 {
		t.Errorf("streams %+v, want 1 active (connect) of 5", s.Streams)
	}
	if len(s.Errors) != 2 {
		t.Fatalf("errors %+v, want dns and over_capacity", s.Errors)
	}
	for _, e := range s.Errors {
		switch e.Code {
		case "dns":
			if e.Total != 2 || e.Recent != 1 {
				t.Errorf("dns: %+v, want 2 in all, 1 in the last 15 minutes", e)
			}
		case "over_capacity":
			if e.Total != 1 || e.Recent != 1 {
				t.Errorf("over_capacity: %+v", e)
			}
		default:
			t.Errorf("unexpected code %q", e.Code)
		}
	}
	if nextStarts != 5 || nextEnds != 5 {
		t.Errorf("next observer saw %d starts, %d ends; want 5, 5", nextStarts, nextEnds)
	}
	// Without a next observer (metrics off) the tracker still counts.
	o2 := NewTracker().Observer(nil)
	o2.StreamStart(tunnel.KindWebSocket)
	o2.SessionDown(tunnel.SessionEndPeer)
}

// TestTraffic: totals survive a session's replacement; the rate is measured
// over the last few seconds, and not at all on a first look.
func TestTraffic(t *testing.T) {
	tr, clock := newFakeTracker()
	t0 := clock.t
	lanes := []tunnel.SessionInfo{{ID: 0, Up: true, Since: t0}, {ID: 1}}
	tr.Attach(Sources{Sessions: func() []tunnel.SessionInfo { return append([]tunnel.SessionInfo(nil), lanes...) }})
	s := tr.Snapshot()
	if s.Traffic.WindowSeconds != 0 || s.State != StateConnected || !s.Up {
		t.Fatalf("first look: %+v, state %s", s.Traffic, s.State)
	}
	for i := 1; i <= 8; i++ {
		clock.advance(time.Second)
		lanes[0].Sent += 1000
		lanes[0].Received += 10000
		s = tr.Snapshot()
	}
	if s.Traffic.WindowSeconds != 3 || s.Traffic.SentPerSecond != 1000 || s.Traffic.ReceivedPerSecond != 10000 {
		t.Errorf("steady: %+v, want 1000 and 10000 B/s over 3 s", s.Traffic)
	}
	// The session is replaced: its bytes stay counted, the new one's add.
	clock.advance(time.Second)
	lanes[0] = tunnel.SessionInfo{ID: 0, Up: true, Since: clock.t, Sent: 50, Received: 70}
	s = tr.Snapshot()
	if s.Traffic.Sent != 8050 || s.Traffic.Received != 80070 {
		t.Errorf("after a reconnect: totals %d sent, %d received; want 8050, 80070", s.Traffic.Sent, s.Traffic.Received)
	}
	// Nobody looked for a long while: no rate rather than a wrong one.
	clock.advance(5 * time.Minute)
	if s = tr.Snapshot(); s.Traffic.WindowSeconds != 0 || s.Traffic.SentPerSecond != 0 {
		t.Errorf("after a long pause: %+v, want no rate", s.Traffic)
	}
}

// TestDialRecorded: the wrapped Dial tells the tracker what it is doing.
func TestDialRecorded(t *testing.T) {
	tr, _ := newFakeTracker()
	release := make(chan struct{})
	entered := make(chan struct{})
	dial := tr.Dial(func(context.Context) (net.Conn, error) {
		close(entered)
		<-release
		return nil, errDial
	})
	done := make(chan error)
	go func() { _, err := dial(context.Background()); done <- err }()
	<-entered
	if s := tr.Snapshot(); s.State != StateConnecting || s.Up {
		t.Errorf("while dialling: %s", s.State)
	}
	close(release)
	if err := <-done; !errors.Is(err, errDial) {
		t.Fatal(err)
	}
	if s := tr.Snapshot(); s.State != StateError || s.Reason != errDial.Error() {
		t.Errorf("after a failed dial: %s %q", s.State, s.Reason)
	}
}
