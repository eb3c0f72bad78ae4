package lifecycle

import (
	"sync"
	"time"
)

// KillWindow is how far back the Kill Lambda looks for the server's newest
// ActiveConnections datapoint when an agent's Kill on exit asks whether
// someone else uses the server: two of the server's metrics intervals (a
// datapoint may lag that long) plus the statistics period the datapoint is
// stamped with (its start). Every sample in a datapoint it acts on was
// therefore taken within KillWindow of the Kill, and an exiting agent's own
// share of it is at most its [StreamPeak] over that window.
func KillWindow(metricsInterval, period time.Duration) time.Duration {
	return 2*metricsInterval + period
}

// DefaultPeakWindow is KillWindow for the server's default metrics_interval
// (60 s) and the Lambdas' one-minute statistics period: how far back an
// agent counts its own streams for [KillRequest.Streams]. A server
// publishing less often makes the Lambda look further back than this; an
// exit right after heavy use may then be refused (409 in_use), and the
// Sleep policy puts the server down instead.
const DefaultPeakWindow = 3 * time.Minute

// StreamPeak tracks the most streams open at once over a sliding window of
// time: what an exiting agent reports as its own share of the server's
// ActiveConnections datapoints. Each of those is the maximum of the counts
// the server sampled in one period, so the agent's part of it is at most
// the most streams it had open at any moment of the window, including
// streams that ended long before the Kill. The zero value is not usable;
// call [NewStreamPeak]. It is safe for concurrent use, costs O(1) per
// Start/End (amortised) and memory in the peak, not in the streams served.
type StreamPeak struct {
	window time.Duration

	mu   sync.Mutex
	open int
	// fell[i] is when the count last fell from i+1 to i, for the levels
	// above open that may still lie in the window: a level is held until the
	// count falls below it, and a higher level cannot have been held later
	// than a lower one, so fell is non-increasing.
	fell []time.Time
}

// NewStreamPeak returns a tracker over window; zero or less means
// [DefaultPeakWindow].
func NewStreamPeak(window time.Duration) *StreamPeak {
	if window <= 0 {
		window = DefaultPeakWindow
	}
	return &StreamPeak{window: window}
}

// Start records a stream that opened.
func (p *StreamPeak) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open++
	if p.open > len(p.fell) {
		p.fell = append(p.fell, time.Time{})
	}
}

// End records a stream that closed. An End without a Start is ignored.
func (p *StreamPeak) End() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == 0 {
		return
	}
	p.open--
	p.fell[p.open] = time.Now()
}

// Peak returns the most streams that were open at once at any moment within
// the window before now.
func (p *StreamPeak) Peak() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	from := time.Now().Add(-p.window)
	n := len(p.fell)
	// Levels whose last moment is out of the window never come back into it:
	// drop them for good.
	for n > p.open && p.fell[n-1].Before(from) {
		n--
	}
	p.fell = p.fell[:n]
	return int64(n)
}
