package tunnel

import (
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// logLimit keeps a flood from becoming a log flood: of the events sharing a
// key, it lets one through per second and counts the rest, and the next one let
// through says how many were left out. One limit is shared by every session of
// a Client or a Server, so many sessions flooding together are limited together.
type logLimit struct {
	mu    sync.Mutex
	every time.Duration
	keys  map[string]*limitKey
}

type limitKey struct {
	last       time.Time
	suppressed int
}

// maxLimitKeys bounds the keys remembered; past it, old keys are forgotten
// (they then let their next event through).
const maxLimitKeys = 256

func newLogLimit() *logLimit {
	return &logLimit{every: time.Second, keys: make(map[string]*limitKey)}
}

// allow reports whether an event with key may be logged now and, if so, how
// many of its kind were suppressed since the last one logged.
func (l *logLimit) allow(key string) (ok bool, suppressed int) {
	if l == nil {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= maxLimitKeys {
			for name, old := range l.keys {
				if now.Sub(old.last) >= l.every {
					delete(l.keys, name)
				}
			}
		}
		if len(l.keys) >= maxLimitKeys {
			return false, 0
		}
		k = &limitKey{}
		l.keys[key] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < l.every {
		k.suppressed++
		return false, 0
	}
	k.last, suppressed, k.suppressed = now, k.suppressed, 0
	return true, suppressed
}

// event returns ev, with the count of events suppressed before it, if key may
// be logged now; nil (which zerolog takes as "log nothing") otherwise.
func (l *logLimit) event(ev *zerolog.Event, key string) *zerolog.Event {
	ok, n := l.allow(key)
	if !ok {
		return nil
	}
	if n > 0 {
		ev = ev.Int("suppressed", n)
	}
	return ev
}

// limitKeyOf is the key of a log line: its text without digits, so that lines
// differing only in stream IDs or counts are one kind.
func limitKeyOf(line string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, line)
}
