package tunnel

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"
)

// SessionConfig tunes one multiplexed session. Both ends use it; they need not agree.
type SessionConfig struct {
	// MaxHeaderSize caps one frame header (PROTOCOL.md). Larger frames close their stream.
	MaxHeaderSize int
	// KeepAliveInterval is how often a ping checks the peer. A dead peer is noticed within
	// KeepAliveInterval + WriteTimeout.
	KeepAliveInterval time.Duration
	// WriteTimeout bounds how long one frame may wait to be written, and how long a ping
	// may wait for its answer. Too short gives false failures on a busy, slow link.
	WriteTimeout time.Duration
	// StreamWindow is the per-stream receive window in bytes. One stream moves at most
	// StreamWindow per round trip, so it bounds throughput on long links; memory is only
	// used while a reader lags behind.
	StreamWindow uint32
	// StreamOpenTimeout bounds how long a new stream may wait for the peer's acknowledgement.
	StreamOpenTimeout time.Duration
	// StreamCloseTimeout bounds how long a half-closed stream waits for the peer's close
	// before it is reset; it is what reclaims streams whose peer went silent.
	StreamCloseTimeout time.Duration
	// AcceptBacklog bounds streams opened by the peer and not yet accepted.
	AcceptBacklog int
}

// DefaultSessionConfig returns the defaults: 64 KiB headers, dead peers noticed within
// 30 s, 4 MiB stream windows: a lagging stream buffers at most one window, and one
// stream moves at most a window per round trip (about 100 MB/s at 40 ms).
func DefaultSessionConfig() SessionConfig {
	return SessionConfig{
		MaxHeaderSize:      DefaultMaxHeaderSize,
		KeepAliveInterval:  10 * time.Second,
		WriteTimeout:       20 * time.Second,
		StreamWindow:       4 << 20,
		StreamOpenTimeout:  30 * time.Second,
		StreamCloseTimeout: 5 * time.Minute,
		AcceptBacklog:      1024,
	}
}

// Validate reports the first unusable setting.
func (c SessionConfig) Validate() error {
	switch {
	case c.MaxHeaderSize < 1024 || c.MaxHeaderSize > 16<<20:
		return fmt.Errorf("tunnel: session: max header size %d out of range [1 KiB, 16 MiB]", c.MaxHeaderSize)
	case c.KeepAliveInterval <= 0:
		return errors.New("tunnel: session: keepalive interval must be positive")
	case c.WriteTimeout <= 0:
		return errors.New("tunnel: session: write timeout must be positive")
	case c.StreamWindow < 256<<10:
		return fmt.Errorf("tunnel: session: stream window %d below the yamux minimum of 256 KiB", c.StreamWindow)
	case c.StreamOpenTimeout < 0 || c.StreamCloseTimeout < 0:
		return errors.New("tunnel: session: stream timeouts must not be negative")
	case c.AcceptBacklog <= 0:
		return errors.New("tunnel: session: accept backlog must be positive")
	}
	return nil
}

func (c SessionConfig) yamux(log zerolog.Logger) *yamux.Config {
	return &yamux.Config{
		AcceptBacklog:          c.AcceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      c.KeepAliveInterval,
		ConnectionWriteTimeout: c.WriteTimeout,
		MaxStreamWindowSize:    c.StreamWindow,
		StreamOpenTimeout:      c.StreamOpenTimeout,
		StreamCloseTimeout:     c.StreamCloseTimeout,
		Logger:                 yamuxLogger{log},
		LogOutput:              nil,
	}
}

// yamuxLogger routes yamux's printf logging into zerolog at debug level: yamux logs
// routine peer disconnects as errors.
type yamuxLogger struct{ log zerolog.Logger }

func (l yamuxLogger) Print(v ...any)                 { l.log.Debug().Msg(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l yamuxLogger) Println(v ...any)               { l.log.Debug().Msg(fmt.Sprint(v...)) }
