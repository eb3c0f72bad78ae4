package fargate

import (
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

// The Kill on exit: the caller alone is stopped; anyone else within the
// window, or anything the policy cannot tell, refuses with a reason that
// names it.
func TestExitPolicyDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := ExitPolicy{} // the defaults: 10 min grace, 60 s interval, 1 min period
	up := Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, LastWake: now.Add(-time.Hour)}
	own := func(sessions int64, steady time.Duration) *lifecycle.AgentUse {
		return &lifecycle.AgentUse{Sessions: sessions, SteadySeconds: int64(steady / time.Second)}
	}
	seen := func(max float64) usage.SessionsSnapshot {
		return usage.SessionsSnapshot{Max: max, Newest: now.Add(-time.Minute), Datapoints: 3}
	}
	tests := []struct {
		name   string
		st     Status
		own    *lifecycle.AgentUse
		m      usage.SessionsSnapshot
		stop   bool
		reason string // a word of the reason
	}{
		{"the caller alone", up, own(2, time.Hour), seen(2), true, "all 2 yours"},
		{"the caller alone, steady just long enough", up, own(1, 4*time.Minute), seen(1), true, "yours"},
		{"nobody at all, the caller had no session", up, own(0, time.Hour), seen(0), true, "yours"},
		{"another agent in the window", up, own(2, time.Hour), seen(3), false, "another agent is connected"},
		{"another agent, the caller had no session", up, own(0, time.Hour), seen(1), false, "another agent is connected"},
		{"another agent, the caller just reconnected", up, own(1, 10*time.Second), seen(2), false, "another agent is connected"},
		{"the caller's sessions changed within the span", up, own(1, 4*time.Minute-time.Second), seen(1), false, "cannot be told"},
		{"metrics missing", up, own(1, time.Hour), usage.SessionsSnapshot{}, false, "no Sessions datapoint"},
		{"an older agent that does not report its use", up, nil, seen(1), false, "older agent"},
		{"a Wake within the grace", Status{DesiredCount: 1, RunningCount: 1, LastWake: now.Add(-9 * time.Minute)}, own(1, time.Hour), seen(1), false, "grace"},
		{"a Wake just past the grace", Status{DesiredCount: 1, RunningCount: 1, LastWake: now.Add(-10 * time.Minute)}, own(1, time.Hour), seen(1), true, "yours"},
		{"two tasks (a replacement)", Status{DesiredCount: 1, RunningCount: 2}, own(1, time.Hour), seen(1), false, "2 tasks"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := p.Decide(now, tc.st, tc.own, tc.m)
			if d.Stop != tc.stop || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = stop %v (%q), want stop %v with a reason saying %q", d.Stop, d.Reason, tc.stop, tc.reason)
			}
		})
	}
}

// A longer metrics interval widens the window and the steadiness asked for.
func TestExitPolicyInterval(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := ExitPolicy{MetricsInterval: 5 * time.Minute}
	if got := p.Window(); got != 11*time.Minute {
		t.Fatalf("window %v, want 11m (two 5 min intervals and the period)", got)
	}
	st := Status{DesiredCount: 1, RunningCount: 1}
	m := usage.SessionsSnapshot{Max: 1, Newest: now.Add(-6 * time.Minute), Datapoints: 1}
	if d := p.Decide(now, st, &lifecycle.AgentUse{Sessions: 1, SteadySeconds: 15 * 60}, m); d.Stop {
		t.Fatalf("steady 15 min with 16 min needed: %+v", d)
	}
	if d := p.Decide(now, st, &lifecycle.AgentUse{Sessions: 1, SteadySeconds: 16 * 60}, m); !d.Stop {
		t.Fatalf("steady 16 min: %+v", d)
	}
}
