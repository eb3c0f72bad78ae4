package lifecycle_test

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

// TestStreamPeak follows the most streams open at once over the window, on
// synctest's clock: a level counts until the window has passed the moment
// the count last fell below it.
func TestStreamPeak(t *testing.T) {
	type step struct {
		wait   time.Duration // before the step
		starts int           // then this many Starts
		ends   int           // then this many Ends
		want   int64         // then Peak
	}
	tests := []struct {
		name   string
		window time.Duration
		steps  []step
	}{
		{"nothing yet", 0, []step{{want: 0}}},
		{"open streams count however old", time.Minute, []step{
			{starts: 2, want: 2}, {wait: time.Hour, want: 2}}},
		{"a burst that ended is remembered for the window", time.Minute, []step{
			{starts: 3, want: 3}, {ends: 3, want: 3},
			{wait: 59 * time.Second, want: 3}, {wait: time.Second, want: 3}, {wait: time.Nanosecond, want: 0}}},
		{"each level lasts from when it was left", time.Minute, []step{
			{starts: 4, want: 4},
			{wait: 10 * time.Second, ends: 1, want: 4}, // 4 until t=10
			{wait: 20 * time.Second, ends: 2, want: 4}, // 3 until t=30, 2 until t=30
			{wait: 41 * time.Second, want: 3},          // t=71: 4 left the window, 3 not yet
			{wait: 20 * time.Second, want: 1},          // t=91: 3 and 2 out, 1 still open
			{ends: 1, want: 1},
			{wait: time.Minute + time.Nanosecond, want: 0}}},
		{"a level dropped from the window comes back only when reached again", time.Minute, []step{
			{starts: 5, ends: 5, want: 5},
			{wait: 2 * time.Minute, want: 0},
			{starts: 2, want: 2}, {starts: 4, want: 6}, {ends: 6, want: 6},
			{wait: 30 * time.Second, starts: 1, want: 6}}},
		{"an End without a Start is ignored", time.Minute, []step{
			{ends: 1, want: 0}, {starts: 1, want: 1}}},
		{"default window is three minutes", 0, []step{
			{starts: 1, ends: 1, want: 1},
			{wait: 3 * time.Minute, want: 1}, {wait: time.Nanosecond, want: 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := lifecycle.NewStreamPeak(tc.window)
				for i, s := range tc.steps {
					time.Sleep(s.wait)
					for range s.starts {
						p.Start()
					}
					for range s.ends {
						p.End()
					}
					if got := p.Peak(); got != s.want {
						t.Fatalf("step %d: peak %d, want %d", i, got, s.want)
					}
				}
			})
		})
	}
}

// TestStreamPeakConcurrent: Starts and Ends from many goroutines (the
// tunnel's observer calls them so) leave a consistent count.
func TestStreamPeakConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := lifecycle.NewStreamPeak(time.Minute)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 50 {
			wg.Go(func() {
				<-start
				p.Start()
				time.Sleep(time.Second)
				p.End()
			})
		}
		close(start)
		time.Sleep(time.Second / 2)
		if got := p.Peak(); got != 50 {
			t.Fatalf("peak with 50 open = %d", got)
		}
		wg.Wait()
		if got := p.Peak(); got != 50 {
			t.Fatalf("peak just after = %d, want 50", got)
		}
		time.Sleep(time.Minute + time.Nanosecond)
		if got := p.Peak(); got != 0 {
			t.Fatalf("peak a window later = %d, want 0", got)
		}
	})
}
