package fargate

import (
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

func TestIdlePolicyDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := IdlePolicy{Threshold: 15 * time.Minute}
	up := func(ago time.Duration) Status {
		return Status{State: lifecycle.StateRunning, DesiredCount: 1, RunningCount: 1, Since: now.Add(-ago)}
	}
	data := func(active float64, lastAgo, pointAgo time.Duration) Snapshot {
		return Snapshot{ActiveConnections: active, ActiveAt: now.Add(-pointAgo), LastActivity: now.Add(-lastAgo), LastActivityAt: now.Add(-pointAgo)}
	}
	tests := []struct {
		name string
		st   Status
		m    Snapshot
		idle bool
	}{
		{"asleep already", Status{State: lifecycle.StateSleeping}, Snapshot{}, false},
		{"stopping already", Status{State: lifecycle.StateStopping, RunningCount: 1}, data(0, time.Hour, time.Minute), false},
		{"active connections", up(time.Hour), data(3, time.Hour, time.Minute), false},
		{"long-lived connection, old activity", up(5 * time.Hour), data(1, 4*time.Hour, time.Minute), false},
		{"recent activity", up(time.Hour), data(0, 2*time.Minute, time.Minute), false},
		{"activity just under threshold", up(time.Hour), data(0, 15*time.Minute-time.Second, time.Minute), false},
		{"activity at threshold", up(time.Hour), data(0, 15*time.Minute, time.Minute), true},
		{"idle", up(time.Hour), data(0, time.Hour, time.Minute), true},
		{"activity in the future (clock skew)", up(time.Hour), data(0, -time.Minute, time.Minute), false},
		{"only a stale busy datapoint", up(time.Hour), data(5, time.Hour, 20*time.Minute), true},
		{"no data, just woke", up(2 * time.Minute), Snapshot{}, false},
		{"no data, up under threshold", up(14 * time.Minute), Snapshot{}, false},
		{"no data, up past threshold", up(16 * time.Minute), Snapshot{}, true},
		{"no data, uptime unknown", Status{State: lifecycle.StateStarting, DesiredCount: 1}, Snapshot{}, false},
		{"only active datapoint, zero, up past threshold", up(time.Hour),
			Snapshot{ActiveConnections: 0, ActiveAt: now.Add(-time.Minute)}, true},
		{"only active datapoint, zero, just woke", up(time.Minute),
			Snapshot{ActiveConnections: 0, ActiveAt: now.Add(-30 * time.Second)}, false},
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
