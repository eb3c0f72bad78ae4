package tunnel

import (
	"strings"
	"time"
)

// SessionInfo describes one of a Client's sessions (a lane: one connection
// to the server, kept up and re-established as needed), for a status page.
type SessionInfo struct {
	// ID is the lane's number, 0 to Sessions-1; it stays the same across
	// reconnects.
	ID int
	// Up reports whether a session is established on the lane now; the other
	// fields but Connecting describe that session, and are zero when it is
	// down.
	Up bool
	// Connecting reports whether a connection attempt is in flight.
	Connecting bool
	// Since is when the session was established.
	Since time.Time
	// RTT is yamux's smoothed round trip to the server; 0 until measured.
	RTT time.Duration
	// Streams is the streams open on the session now.
	Streams int
	// Sent and Received count the bytes of the session's connection (frames
	// and bodies, with yamux's overhead, without TLS's), since Since.
	Sent, Received int64
	// Err is why the lane is down, when it is: its last connection attempt's
	// failure, or the first reason its last session failed (the server
	// refusing the agent's certificate matches ErrClientCertificate). Nil
	// while Up, and when the lane was only closed.
	Err error
}

// Sessions describes the client's sessions, one per lane in lane order. It
// only reads: it connects nothing.
func (c *Client) Sessions() []SessionInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]SessionInfo, 0, len(c.lanes))
	for _, l := range c.lanes {
		info := SessionInfo{ID: l.id, Connecting: l.attempt != nil}
		if l.live() {
			s := l.sess
			written := s.conn.written.Load()
			info.Up = true
			info.Since = s.started
			info.RTT = s.mux.RTT()
			info.Streams = s.NumStreams()
			info.Sent = written
			info.Received = s.moved() - written
		} else {
			info.Err = l.err
		}
		out = append(out, info)
	}
	return out
}

// Meaning says in a few words what an error code or stream outcome means,
// for people; "" for a code this package does not know.
func (c ErrorCode) Meaning() string {
	for _, e := range codeTable {
		if e.Code == c {
			return strings.ReplaceAll(e.Meaning, "`", "")
		}
	}
	switch c {
	case OutcomeOK:
		return "the stream did its work"
	case OutcomeCanceled:
		return "the client gave up"
	case OutcomeTunnelUnavailable:
		return "the server could not be reached, or the session ended before the answer"
	case OutcomeAborted:
		return "the stream broke after its answer (reset or truncated)"
	case OutcomeIdle:
		return "a CONNECT or WebSocket relay closed by the idle timeout"
	}
	return ""
}
