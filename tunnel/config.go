package tunnel

import (
	"errors"
	"fmt"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// SessionConfig tunes one multiplexed session. Both ends use it; they need not
// agree. The zero value means the defaults (DefaultSessionConfig).
type SessionConfig struct {
	// MaxHeaderSize caps one frame header (PROTOCOL.md). Larger frames close their
	// stream. Default 64 KiB.
	MaxHeaderSize int
	// KeepAliveInterval is how often a ping checks the peer. A dead peer is noticed
	// within KeepAliveInterval + 2 × WriteTimeout. Default 10 s.
	KeepAliveInterval time.Duration
	// WriteTimeout bounds how long one frame may wait to be written, and how long a
	// ping may wait for its answer. Too short gives false failures on a busy, slow
	// link. Default 20 s.
	WriteTimeout time.Duration
	// StreamWindow is the largest receive window one stream may grow to. Windows
	// start at 256 KiB and double, up to this, only while the stream's reader keeps
	// up with a round trip's worth of data (RTT-based auto-tuning): one stream
	// moves at most StreamWindow per round trip, so this bounds the speed of one
	// stream on a long link, while the memory all streams may hold is bounded by
	// the Client's or Server's ReceiveBudget. Default 64 MiB.
	StreamWindow uint32
	// AcceptBacklog bounds streams opened by the peer and not yet accepted.
	// Default 1024.
	AcceptBacklog int
}

// Session defaults; see SessionConfig.
const (
	defaultKeepAlive     = 10 * time.Second
	defaultWriteTimeout  = 20 * time.Second
	defaultStreamWindow  = 64 << 20
	minStreamWindow      = 256 << 10 // yamux's initial window; a smaller maximum is refused
	defaultAcceptBacklog = 1024
)

// DefaultMaxHeaderSize caps the JSON header of one frame by default.
const DefaultMaxHeaderSize = wire.DefaultMaxHeaderSize

// DefaultSessionConfig returns what a zero SessionConfig stands for: 64 KiB
// headers, dead peers noticed within 50 s, stream windows auto-tuned up to 64 MiB.
func DefaultSessionConfig() SessionConfig { return SessionConfig{}.withDefaults() }

func (c SessionConfig) withDefaults() SessionConfig {
	if c.MaxHeaderSize == 0 {
		c.MaxHeaderSize = DefaultMaxHeaderSize
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = defaultKeepAlive
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = defaultStreamWindow
	}
	if c.AcceptBacklog == 0 {
		c.AcceptBacklog = defaultAcceptBacklog
	}
	return c
}

// Validate reports the first unusable setting. Zero fields take their defaults.
func (c SessionConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxHeaderSize < 1024 || c.MaxHeaderSize > 16<<20:
		return fmt.Errorf("tunnel: session: max header size %d out of range [1 KiB, 16 MiB]", c.MaxHeaderSize)
	case c.KeepAliveInterval < 0:
		return errors.New("tunnel: session: keepalive interval must not be negative")
	case c.WriteTimeout < 0:
		return errors.New("tunnel: session: write timeout must not be negative")
	case c.StreamWindow < minStreamWindow:
		return fmt.Errorf("tunnel: session: stream window %d below the yamux minimum of 256 KiB", c.StreamWindow)
	case c.AcceptBacklog < 0:
		return errors.New("tunnel: session: accept backlog must not be negative")
	}
	return nil
}
