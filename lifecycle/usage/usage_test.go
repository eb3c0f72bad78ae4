package usage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/rs/zerolog"
)

type fakeCW struct {
	mu    sync.Mutex
	puts  []*cloudwatch.PutMetricDataInput
	fails int // fail this many calls first
	ctxOK []bool
}

func (f *fakeCW) PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, _ ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctxOK = append(f.ctxOK, ctx.Err() == nil)
	if f.fails > 0 {
		f.fails--
		return nil, errors.New("throttling")
	}
	f.puts = append(f.puts, in)
	return &cloudwatch.PutMetricDataOutput{}, nil
}

func (f *fakeCW) count() (puts, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.puts), len(f.ctxOK)
}

type fixedStats struct {
	active int64
	last   time.Time
}

func (s fixedStats) ActiveStreams() int64    { return s.active }
func (s fixedStats) LastActivity() time.Time { return s.last }

func datum(in *cloudwatch.PutMetricDataInput, name string) *cwtypes.MetricDatum {
	for i := range in.MetricData {
		if aws.ToString(in.MetricData[i].MetricName) == name {
			return &in.MetricData[i]
		}
	}
	return nil
}

func TestPublisherPublish(t *testing.T) {
	t.Parallel()
	started := time.Unix(1_790_000_000, 0)
	tests := []struct {
		name     string
		src      fixedStats
		wantLast float64
	}{
		{"active", fixedStats{active: 4, last: time.Unix(1_790_000_500, 0)}, 1_790_000_500},
		{"never active reports start time", fixedStats{}, 1_790_000_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cw := &fakeCW{}
			cfg := DefaultPublisherConfig()
			cfg.Service = "svc-a"
			p, err := NewPublisher(cfg, cw, tc.src, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			p.started = started
			if err := p.Publish(context.Background()); err != nil {
				t.Fatal(err)
			}
			in := cw.puts[0]
			if aws.ToString(in.Namespace) != "Fluidity" {
				t.Errorf("namespace %q", aws.ToString(in.Namespace))
			}
			ac, la := datum(in, MetricActiveConnections), datum(in, MetricLastActivity)
			if ac == nil || la == nil {
				t.Fatalf("metrics %+v", in.MetricData)
			}
			if aws.ToFloat64(ac.Value) != float64(tc.src.active) || aws.ToFloat64(la.Value) != tc.wantLast {
				t.Errorf("values active=%v last=%v, want %v %v", aws.ToFloat64(ac.Value), aws.ToFloat64(la.Value), tc.src.active, tc.wantLast)
			}
			for _, d := range in.MetricData {
				if len(d.Dimensions) != 1 || aws.ToString(d.Dimensions[0].Name) != "Service" || aws.ToString(d.Dimensions[0].Value) != "svc-a" {
					t.Errorf("dimensions %+v", d.Dimensions)
				}
			}
		})
	}
}

// Failures are retried on the next tick, never fatal, and a final datapoint
// is published after cancellation.
func TestPublisherRun(t *testing.T) {
	t.Parallel()
	cw := &fakeCW{fails: 2}
	cfg := DefaultPublisherConfig()
	cfg.Interval = 5 * time.Millisecond
	p, err := NewPublisher(cfg, cw, fixedStats{active: 1, last: time.Now()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if puts, _ := cw.count(); puts >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("publisher did not recover from failures")
		}
		time.Sleep(time.Millisecond)
	}
	_, callsBefore := cw.count()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if len(cw.ctxOK) <= callsBefore || !cw.ctxOK[len(cw.ctxOK)-1] {
		t.Fatalf("no final publish with a live context after cancel (calls %v)", cw.ctxOK)
	}
}

func TestPublisherConfigValidate(t *testing.T) {
	t.Parallel()
	mod := func(f func(*PublisherConfig)) PublisherConfig {
		c := DefaultPublisherConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  PublisherConfig
		ok   bool
	}{
		{"default", DefaultPublisherConfig(), true},
		{"no namespace", mod(func(c *PublisherConfig) { c.Namespace = "" }), false},
		{"no service", mod(func(c *PublisherConfig) { c.Service = "" }), false},
		{"zero interval", mod(func(c *PublisherConfig) { c.Interval = 0 }), false},
		{"zero timeout", mod(func(c *PublisherConfig) { c.Timeout = 0 }), false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

type fakeGet struct {
	out []*cloudwatch.GetMetricDataOutput
}

func (f *fakeGet) GetMetricData(_ context.Context, in *cloudwatch.GetMetricDataInput, _ ...func(*cloudwatch.Options)) (*cloudwatch.GetMetricDataOutput, error) {
	o := f.out[0]
	f.out = f.out[1:]
	return o, nil
}

// The reader takes the newest datapoint whatever the order and across pages.
func TestMetricsReaderNewest(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_790_001_000, 0)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	f := &fakeGet{out: []*cloudwatch.GetMetricDataOutput{
		{NextToken: aws.String("p2"), MetricDataResults: []cwtypes.MetricDataResult{
			{Id: aws.String("active"), Timestamps: []time.Time{at(5 * time.Minute), at(time.Minute)}, Values: []float64{7, 0}},
		}},
		{MetricDataResults: []cwtypes.MetricDataResult{
			{Id: aws.String("active"), Timestamps: []time.Time{at(3 * time.Minute)}, Values: []float64{2}},
			{Id: aws.String("last"), Timestamps: []time.Time{at(2 * time.Minute), at(4 * time.Minute)}, Values: []float64{1_790_000_100, 1_790_000_000}},
		}},
	}}
	r, err := NewMetricsReader(DefaultMetricsConfig(), f)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.Read(context.Background(), now, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if snap.ActiveConnections != 0 || !snap.ActiveAt.Equal(at(time.Minute)) ||
		!snap.LastActivity.Equal(time.Unix(1_790_000_100, 0)) || !snap.LastActivityAt.Equal(at(2*time.Minute)) {
		t.Fatalf("snapshot %+v", snap)
	}
}

type liveStats struct {
	mu     sync.Mutex
	active int64
	last   time.Time
}

func (s *liveStats) ActiveStreams() int64 { s.mu.Lock(); defer s.mu.Unlock(); return s.active }
func (s *liveStats) LastActivity() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
func (s *liveStats) set(active int64, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active, s.last = active, last
}

// The server publishes at once when it goes from idle to active, not one
// metrics interval later, and only once per quiet interval.
func TestPublisherIdleToActive(t *testing.T) {
	t.Parallel()
	cw := &fakeCW{}
	src := &liveStats{last: time.Now().Add(-time.Hour)}
	cfg := DefaultPublisherConfig()
	cfg.Interval, cfg.Watch = time.Hour, 2*time.Millisecond // no tick during the test
	p, err := NewPublisher(cfg, cw, src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitPuts := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if puts, _ := cw.count(); puts >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d publications, want %d", func() int { n, _ := cw.count(); return n }(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitPuts(1) // at start: idle
	time.Sleep(20 * time.Millisecond)
	if puts, _ := cw.count(); puts != 1 {
		t.Fatalf("%d publications while idle, want 1", puts)
	}
	src.set(1, time.Now())
	waitPuts(2)
	cw.mu.Lock()
	v := aws.ToFloat64(datum(cw.puts[1], MetricActiveConnections).Value)
	cw.mu.Unlock()
	if v != 1 {
		t.Fatalf("immediate publication said %v active, want 1", v)
	}
	// Busy on and off: the newest publication already says active, so no
	// more until a tick.
	src.set(0, time.Now())
	time.Sleep(10 * time.Millisecond)
	src.set(2, time.Now())
	time.Sleep(20 * time.Millisecond)
	if puts, _ := cw.count(); puts != 2 {
		t.Fatalf("%d publications, want 2: only the idle-to-active one between ticks", puts)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A stream that opened and closed between two looks counts as activity.
func TestPublisherShortActivity(t *testing.T) {
	t.Parallel()
	cw := &fakeCW{}
	src := &liveStats{last: time.Now().Add(-time.Hour)}
	cfg := DefaultPublisherConfig()
	cfg.Interval, cfg.Watch = time.Hour, 2*time.Millisecond
	p, err := NewPublisher(cfg, cw, src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.becameActive() {
		t.Fatal("idle source reported as active")
	}
	src.set(0, time.Now())
	if !p.becameActive() {
		t.Fatal("a stream that came and went was not seen")
	}
	if err := p.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	src.set(0, time.Now().Add(time.Second))
	if p.becameActive() {
		t.Fatal("a second immediate publication within the quiet interval")
	}
}
