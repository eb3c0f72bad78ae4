package tunnel

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-yamux/v5"
	"github.com/rs/zerolog"
)

// TestReceiveBudget: the initial window (priority 255) is always granted and
// counted; growth below that priority is granted only within the limit;
// ReleaseMemory and Done give back what a span holds, Done only once.
func TestReceiveBudget(t *testing.T) {
	type op struct {
		span    int    // which span
		reserve int    // bytes to reserve, or
		release int    // bytes to release, or
		done    bool   // end the span
		prio    uint8  // priority of a reserve
		wantErr bool   // the reserve is refused
		used    int64  // the budget's Used afterwards
		note    string // what the step shows
	}
	const limit = 1000
	tests := []struct {
		name string
		ops  []op
	}{
		{"initial windows past the limit", []op{
			{span: 0, reserve: 800, prio: 255, used: 800},
			{span: 1, reserve: 800, prio: 255, used: 1600, note: "prio 255 is granted past the limit"},
			{span: 0, reserve: 1, prio: 254, wantErr: true, used: 1600, note: "growth past it is not"},
		}},
		{"growth within the limit", []op{
			{span: 0, reserve: 600, prio: 0, used: 600},
			{span: 1, reserve: 400, prio: 100, used: 1000, note: "exactly the limit"},
			{span: 1, reserve: 1, prio: 254, wantErr: true, used: 1000},
			{span: 0, release: 100, used: 900},
			{span: 1, reserve: 100, prio: 1, used: 1000, note: "released bytes can be granted again"},
		}},
		{"release more than held", []op{
			{span: 0, reserve: 300, prio: 0, used: 300},
			{span: 1, reserve: 200, prio: 0, used: 500},
			{span: 0, release: 1000, used: 200, note: "a span gives back at most what it holds"},
			{span: 0, release: 1, used: 200},
		}},
		{"done gives back once", []op{
			{span: 0, reserve: 256, prio: 255, used: 256},
			{span: 0, reserve: 500, prio: 0, used: 756},
			{span: 1, reserve: 100, prio: 0, used: 856},
			{span: 0, done: true, used: 100},
			{span: 0, done: true, used: 100, note: "Done twice is harmless"},
			{span: 0, release: 50, used: 100, note: "a released span holds nothing"},
			{span: 0, reserve: 1, prio: 255, wantErr: true, used: 100, note: "a done span grants nothing"},
			{span: 1, done: true, used: 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newReceiveBudget(limit)
			var spans []yamux.MemoryManager
			for range 2 {
				s, err := b.span()
				if err != nil {
					t.Fatal(err)
				}
				spans = append(spans, s)
			}
			for i, o := range tc.ops {
				s := spans[o.span]
				switch {
				case o.done:
					s.Done()
				case o.release > 0:
					s.ReleaseMemory(o.release)
				default:
					err := s.ReserveMemory(o.reserve, o.prio)
					if o.wantErr != (err != nil) {
						t.Fatalf("step %d (%s): reserve %d at %d: %v", i, o.note, o.reserve, o.prio, err)
					}
					if err != nil && !errors.Is(err, errReceiveBudget) {
						t.Fatalf("step %d: %v, want errReceiveBudget", i, err)
					}
				}
				if got := b.Used(); got != o.used {
					t.Fatalf("step %d (%s): used %d, want %d", i, o.note, got, o.used)
				}
			}
		})
	}
}

// TestReceiveBudgetConcurrent: spans reserving and releasing at once never
// take the budget past its limit with growth, and end with nothing used.
func TestReceiveBudgetConcurrent(t *testing.T) {
	const limit = 64 << 10
	b := newReceiveBudget(limit)
	var wg sync.WaitGroup
	var over sync.Once
	for range 8 {
		wg.Go(func() {
			s, _ := b.span()
			defer s.Done()
			for range 500 {
				if err := s.ReserveMemory(1<<10, 0); err == nil {
					if u := b.Used(); u > limit {
						over.Do(func() { t.Errorf("used %d past the limit %d", u, limit) })
					}
					s.ReleaseMemory(512)
				}
			}
		})
	}
	wg.Wait()
	if u := b.Used(); u != 0 {
		t.Fatalf("used %d after every span is done, want 0", u)
	}
}

// TestYamuxLogLevels: yamux's lines are logged at the level their tag names,
// after the date and time its logger puts in front; untagged lines at debug.
func TestYamuxLogLevels(t *testing.T) {
	tests := []struct{ line, level, msg string }{
		{"2026/12/01 08:00:00 [ERR] yamux: x\n", "error", "[ERR] yamux: x"},
		{"2026/12/01 08:00:00 [WARN] yamux: stream window full\n", "warn", "[WARN] yamux: stream window full"},
		{"2026/12/01 08:00:00 [DEBUG] yamux: ping\n", "debug", "[DEBUG] yamux: ping"},
		{"a line without a tag\n", "debug", "a line without a tag"},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		l := yamuxLog{log: zerolog.New(&buf).Level(zerolog.DebugLevel)}
		n, err := l.Write([]byte(tc.line))
		if err != nil || n != len(tc.line) {
			t.Fatalf("%q: wrote %d, %v", tc.line, n, err)
		}
		var ev struct{ Level, Message string }
		if err := json.Unmarshal(buf.Bytes(), &ev); err != nil {
			t.Fatalf("%q: logged %q: %v", tc.line, buf.String(), err)
		}
		if ev.Level != tc.level || ev.Message != tc.msg {
			t.Errorf("%q logged at %s as %q, want %s %q", strings.TrimSpace(tc.line), ev.Level, ev.Message, tc.level, tc.msg)
		}
	}
}
