package metrics

import "github.com/fluidity-tunnel/fluidity/tunnel"

// SessionCounter is told of every tunnel session that comes up or goes
// down: lifecycle.OwnSessions on the agent, usage.SessionCounter on the
// server, which the Kill on exit's decision rests on.
type SessionCounter interface {
	Up()
	Down()
}

// CountSessions returns an observer that tells c of every session and
// passes every event on to next (which may be nil).
func CountSessions(c SessionCounter, next *tunnel.Observer) *tunnel.Observer {
	o := &tunnel.Observer{}
	if next != nil {
		*o = *next
	}
	o.SessionUp = func() {
		c.Up()
		if next != nil && next.SessionUp != nil {
			next.SessionUp()
		}
	}
	o.SessionDown = func(reason string) {
		c.Down()
		if next != nil && next.SessionDown != nil {
			next.SessionDown(reason)
		}
	}
	return o
}
