package lifecycle_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// TestOwnSessions follows the agent's sessions on synctest's clock: the
// count, and the time since the last session came up or went down.
func TestOwnSessions(t *testing.T) {
	type step struct {
		wait     time.Duration // before the step
		ups      int           // then this many Ups
		downs    int           // then this many Downs
		sessions int64         // then Use
		steady   int64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"never connected: steady since the start", []step{{wait: time.Hour, steady: 3600}}},
		{"two lanes up for an hour", []step{{ups: 2, sessions: 2}, {wait: time.Hour, sessions: 2, steady: 3600}}},
		{"a reconnect restarts the clock", []step{
			{ups: 2, sessions: 2}, {wait: 10 * time.Minute, downs: 1, sessions: 1},
			{wait: time.Second, ups: 1, sessions: 2}, {wait: 90*time.Second + 999*time.Millisecond, sessions: 2, steady: 90}}},
		{"a down without an up changes nothing", []step{{wait: time.Minute, downs: 1, steady: 60}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := lifecycle.NewOwnSessions()
				for i, s := range tc.steps {
					time.Sleep(s.wait)
					for range s.ups {
						o.Up()
					}
					for range s.downs {
						o.Down()
					}
					if got, want := o.Use(), (lifecycle.AgentUse{Sessions: s.sessions, SteadySeconds: s.steady}); got != want {
						t.Fatalf("step %d: Use() = %+v, want %+v", i, got, want)
					}
				}
			})
		})
	}
	var zero lifecycle.OwnSessions
	zero.Up()
	if got := zero.Use(); got.Sessions != 1 {
		t.Fatalf("zero value: %+v", got)
	}
}

// The Kill Lambda's window and the steadiness it asks of an exiting agent,
// for the server's default 60 s metrics interval and one-minute periods.
func TestKillWindowDefaults(t *testing.T) {
	if got := lifecycle.KillWindow(time.Minute, time.Minute); got != 3*time.Minute {
		t.Errorf("KillWindow = %v, want 3m", got)
	}
	if got := lifecycle.SteadyNeeded(time.Minute, time.Minute); got != 4*time.Minute {
		t.Errorf("SteadyNeeded = %v, want 4m", got)
	}
}
