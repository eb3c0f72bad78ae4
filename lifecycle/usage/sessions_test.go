package usage

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/rs/zerolog"
)

// A datapoint counts the sessions up at any moment since the previous one:
// those still up, and those that came and went in between.
func TestSessionCounter(t *testing.T) {
	t.Parallel()
	var c SessionCounter
	if n := c.TakeSessions(); n != 0 {
		t.Fatalf("fresh counter took %d", n)
	}
	c.Up()
	c.Up()
	c.Down()
	if n := c.TakeSessions(); n != 2 {
		t.Fatalf("two sessions, one ended: took %d, want 2", n)
	}
	if n := c.TakeSessions(); n != 1 {
		t.Fatalf("the one still up: took %d, want 1", n)
	}
	c.Down()
	c.Down() // without an Up: ignored
	if n := c.TakeSessions(); n != 1 {
		t.Fatalf("it ended in this interval: took %d, want 1", n)
	}
	if n := c.TakeSessions(); n != 0 {
		t.Fatalf("nothing up: took %d", n)
	}
	c.Up()
	n := c.TakeSessions()
	c.ReturnSessions(n) // its publication failed
	c.Up()
	if n := c.TakeSessions(); n != 3 {
		t.Fatalf("after a failed publication: took %d, want 3 (the returned one counted twice)", n)
	}
}

type countingStats struct {
	fixedStats
	*SessionCounter
}

// The publisher sends Sessions when its source counts them, and a failed
// publication loses none of them.
func TestPublisherSessions(t *testing.T) {
	t.Parallel()
	cw := &fakeCW{fails: 1}
	src := countingStats{SessionCounter: &SessionCounter{}}
	p, err := NewPublisher(DefaultPublisherConfig(), cw, src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	src.Up()
	src.Down()
	if err := p.Publish(context.Background()); err == nil {
		t.Fatal("the first publication was to fail")
	}
	if err := p.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := datum(cw.puts[0], MetricSessions)
	if d == nil || aws.ToFloat64(d.Value) != 1 || d.Unit != cwtypes.StandardUnitCount {
		t.Fatalf("Sessions datum %+v, want 1 (the session of the failed interval)", d)
	}
	// A source without sessions publishes no such metric.
	cw2 := &fakeCW{}
	p2, _ := NewPublisher(DefaultPublisherConfig(), cw2, fixedStats{}, zerolog.Nop())
	if err := p2.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := datum(cw2.puts[0], MetricSessions); d != nil {
		t.Fatalf("Sessions published for a source that does not count them: %+v", d)
	}
}

// ReadSessions takes the maximum over the window, across pages and in any
// order, and leaves out a period that began before the window.
func TestMetricsReaderSessions(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_790_001_000, 0)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	f := &fakeGet{out: []*cloudwatch.GetMetricDataOutput{
		{NextToken: aws.String("p2"), MetricDataResults: []cwtypes.MetricDataResult{
			{Id: aws.String("sessions"), Timestamps: []time.Time{at(time.Minute), at(4 * time.Minute)}, Values: []float64{1, 9}},
		}},
		{MetricDataResults: []cwtypes.MetricDataResult{
			{Id: aws.String("sessions"), Timestamps: []time.Time{at(2 * time.Minute), at(0)}, Values: []float64{3, 2}},
		}},
	}}
	r, err := NewMetricsReader(DefaultMetricsConfig(), f)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.ReadSessions(context.Background(), now, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := (SessionsSnapshot{Max: 3, Newest: now, Datapoints: 3}); snap != want {
		t.Fatalf("snapshot %+v, want %+v", snap, want)
	}
	empty := &fakeGet{out: []*cloudwatch.GetMetricDataOutput{{}}}
	r, _ = NewMetricsReader(DefaultMetricsConfig(), empty)
	if snap, err := r.ReadSessions(context.Background(), now, 3*time.Minute); err != nil || snap != (SessionsSnapshot{}) {
		t.Fatalf("no data: %+v, %v", snap, err)
	}
}
