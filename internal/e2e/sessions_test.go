package e2e

import (
	"testing"
	"time"
)

// TestAgentSessions: the agent keeps as many sessions to the server as `sessions`
// says (two by default), each one TLS connection the server logs.
func TestAgentSessions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"default", nil, 2},
		{"one", []string{"--sessions", "1"}, 1},
		{"three", []string{"--sessions", "3"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, stackOpts{agentArgs: tc.args})
			started := func() int {
				n := 0
				for _, e := range s.server.stderr.entries() {
					if msgIs("session started")(e) {
						n++
					}
				}
				return n
			}
			deadline := time.Now().Add(startTimeout)
			for started() < tc.want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			// Give an extra session the time to show up, if one were coming.
			time.Sleep(300 * time.Millisecond)
			if n := started(); n != tc.want {
				t.Fatalf("server logged %d sessions, want %d:\n%s", n, tc.want, s.server.stderr.String())
			}
		})
	}
}
