package fargate

import (
	"strings"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

func TestIdlePolicyDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := IdlePolicy{Threshold: 15 * time.Minute}
	up := func(ago time.Duration) Status {
		return Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, Since: now.Add(-ago)}
	}
	data := func(active float64, lastAgo, pointAgo time.Duration) usage.Snapshot {
		return usage.Snapshot{ActiveConnections: active, ActiveAt: now.Add(-pointAgo), LastActivity: now.Add(-lastAgo), LastActivityAt: now.Add(-pointAgo)}
	}
	tests := []struct {
		name string
		st   Status
		m    usage.Snapshot
		idle bool
	}{
		{"asleep already", Status{State: lifecycle.StateSleeping}, usage.Snapshot{}, false},
		{"stopping already", Status{State: lifecycle.StateStopping, RunningCount: 1}, data(0, time.Hour, time.Minute), false},
		{"active connections", up(time.Hour), data(3, time.Hour, time.Minute), false},
		{"long-lived connection, old activity", up(5 * time.Hour), data(1, 4*time.Hour, time.Minute), false},
		{"recent activity", up(time.Hour), data(0, 2*time.Minute, time.Minute), false},
		{"activity just under threshold", up(time.Hour), data(0, 15*time.Minute-time.Second, time.Minute), false},
		{"activity at threshold", up(time.Hour), data(0, 15*time.Minute, time.Minute), true},
		{"idle", up(time.Hour), data(0, time.Hour, time.Minute), true},
		{"activity in the future (clock skew)", up(time.Hour), data(0, -time.Minute, time.Minute), false},
		{"only a stale busy datapoint", up(time.Hour), data(5, time.Hour, 20*time.Minute), true},
		{"no data, just woke", up(2 * time.Minute), usage.Snapshot{}, false},
		{"no data, up under threshold", up(14 * time.Minute), usage.Snapshot{}, false},
		{"no data, up past threshold", up(16 * time.Minute), usage.Snapshot{}, true},
		{"no data, uptime unknown", Status{State: lifecycle.StateStarting, DesiredCount: 1}, usage.Snapshot{}, false},
		{"only active datapoint, zero, up past threshold", up(time.Hour),
			usage.Snapshot{ActiveConnections: 0, ActiveAt: now.Add(-time.Minute)}, true},
		{"only active datapoint, zero, just woke", up(time.Minute),
			usage.Snapshot{ActiveConnections: 0, ActiveAt: now.Add(-30 * time.Second)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(now, tc.st, tc.m)
			if d.Idle != tc.idle || d.Reason == "" {
				t.Fatalf("Decide = idle %v (%q), want idle %v with a reason", d.Idle, d.Reason, tc.idle)
			}
		})
	}
}

func TestIdlePolicyValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		threshold time.Duration
		ok        bool
	}{{15 * time.Minute, true}, {time.Second, true}, {0, false}, {-time.Minute, false}, {time.Millisecond, false}} {
		if err := (IdlePolicy{Threshold: tc.threshold}).Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%v) = %v, want ok=%v", tc.threshold, err, tc.ok)
		}
	}
	if DefaultIdlePolicy().Threshold != 15*time.Minute {
		t.Errorf("default threshold %v", DefaultIdlePolicy().Threshold)
	}
}

// The rules against metric lag and crash loops, pure.
func TestIdlePolicyGraceConfirmCrash(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := DefaultIdlePolicy()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	idleData := usage.Snapshot{ActiveAt: ago(time.Minute), LastActivity: ago(time.Hour), LastActivityAt: ago(time.Minute)}
	running := func(mod func(*Status)) Status {
		st := Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, Since: ago(time.Hour), RunningSince: ago(time.Hour)}
		if mod != nil {
			mod(&st)
		}
		return st
	}
	crashing := func(mod func(*Status)) Status {
		st := Status{State: lifecycle.StateFailed, DesiredCount: 1, FailedStarts: 3, FailingSince: ago(12 * time.Minute),
			WokenAt: ago(13 * time.Minute), LastWake: ago(time.Minute), FailureReason: "Essential container in task exited"}
		if mod != nil {
			mod(&st)
		}
		return st
	}
	tests := []struct {
		name         string
		st           Status
		m            usage.Snapshot
		idle, scaled bool
		reason       string
	}{
		{"idle, first check", running(nil), idleData, true, false, "first idle check"},
		{"idle, confirmed", running(func(s *Status) { s.IdleSince = ago(5 * time.Minute) }), idleData, true, true, "previous check"},
		{"idle, duplicate invocation", running(func(s *Status) { s.IdleSince = ago(10 * time.Second) }), idleData, true, false, "before a check may confirm"},
		{"stale idle datapoint, woken seconds ago", running(func(s *Status) { s.LastWake = ago(5 * time.Second) }), idleData, false, false, "grace"},
		{"woken 9 min ago", running(func(s *Status) { s.LastWake = ago(9 * time.Minute) }), idleData, false, false, "grace"},
		{"woken 11 min ago", running(func(s *Status) { s.LastWake = ago(11 * time.Minute) }), idleData, true, false, "first idle check"},
		{"no task ever, woken past threshold", Status{State: lifecycle.StateStarting, DesiredCount: 1, WokenAt: ago(20 * time.Minute), LastWake: ago(20 * time.Minute)},
			usage.Snapshot{}, true, false, "woken"},
		{"no task ever, woken under threshold", Status{State: lifecycle.StateStarting, DesiredCount: 1, WokenAt: ago(12 * time.Minute), LastWake: ago(12 * time.Minute)},
			usage.Snapshot{}, false, false, "woken"},
		{"crash loop past the bound, despite a recent Wake", crashing(nil), usage.Snapshot{}, true, true, "crash loop"},
		{"crash loop, times from the Wake only", crashing(func(s *Status) { s.FailingSince = time.Time{} }), usage.Snapshot{}, true, true, "crash loop"},
		{"failing under the bound", crashing(func(s *Status) { s.FailingSince, s.WokenAt = ago(5*time.Minute), ago(5*time.Minute) }), usage.Snapshot{}, false, false, "grace"},
		{"one failure is no loop", crashing(func(s *Status) { s.FailedStarts = 1 }), usage.Snapshot{}, false, false, "grace"},
		{"a healthy task", crashing(func(s *Status) { s.Healthy = true }), usage.Snapshot{}, false, false, "grace"},
		{"a task up past the bound", crashing(func(s *Status) { s.RunningSince = ago(11 * time.Minute) }), usage.Snapshot{}, false, false, "grace"},
		{"crash loop, no time known at all", crashing(func(s *Status) { s.FailingSince, s.WokenAt = time.Time{}, time.Time{} }), usage.Snapshot{}, false, false, "grace"},
		{"asleep with failures", Status{State: lifecycle.StateSleeping, FailedStarts: 5}, usage.Snapshot{}, false, false, "already"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(now, tc.st, tc.m)
			if d.Idle != tc.idle || d.ScaleToZero != tc.scaled || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = idle %v scaled %v (%q), want idle %v scaled %v, reason with %q", d.Idle, d.ScaleToZero, d.Reason, tc.idle, tc.scaled, tc.reason)
			}
		})
	}
	if err := (IdlePolicy{Threshold: time.Minute, WakeGrace: -time.Second}).Validate(); err == nil {
		t.Error("negative grace accepted")
	}
}
