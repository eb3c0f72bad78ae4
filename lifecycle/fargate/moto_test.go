package fargate_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
)

type stats struct {
	active int64
	last   time.Time
}

func (s stats) ActiveStreams() int64    { return s.active }
func (s stats) LastActivity() time.Time { return s.last }

// The publisher's datapoints come back through the reader.
func TestPublisherRoundTripMoto(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	cfg := awstest.AWSConfig(endpoint)
	pcfg := fargate.DefaultPublisherConfig()
	pcfg.Service = "round-trip"
	last := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	pub, err := fargate.NewPublisherFromConfig(cfg, pcfg, stats{active: 3, last: last}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := pub.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	mcfg := fargate.DefaultMetricsConfig()
	mcfg.Service = "round-trip"
	r, err := fargate.NewMetricsReaderFromConfig(cfg, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.Read(ctx, time.Now(), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if snap.ActiveConnections != 3 || !snap.LastActivity.Equal(last) || snap.ActiveAt.IsZero() {
		t.Fatalf("snapshot %+v, want 3 active and last activity %v", snap, last)
	}
}

// The server's Publisher (its Run loop) writes to moto and the Sleep logic
// reads the datapoints back and acts on the seeded ECS service.
func TestIdleApplyMoto(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	cfg := awstest.AWSConfig(endpoint)
	tests := []struct {
		name     string
		src      stats
		wantIdle bool
	}{
		{"busy", stats{active: 1, last: time.Now().Add(-time.Hour)}, false},
		{"idle", stats{active: 0, last: time.Now().Add(-time.Hour)}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "apply-" + tc.name, Service: "svc-" + tc.name, DesiredCount: 1})
			pcfg := fargate.DefaultPublisherConfig()
			pcfg.Service, pcfg.Interval = f.Service, 20*time.Millisecond
			pub, err := fargate.NewPublisherFromConfig(cfg, pcfg, tc.src, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- pub.Run(runCtx) }()
			time.Sleep(100 * time.Millisecond) // a few ticks
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}

			svc, err := fargate.NewFromConfig(cfg, fargate.ServiceConfig{Cluster: f.Cluster, Service: f.Service}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			mcfg := fargate.DefaultMetricsConfig()
			mcfg.Service = f.Service
			reader, err := fargate.NewMetricsReaderFromConfig(cfg, mcfg)
			if err != nil {
				t.Fatal(err)
			}
			d, err := fargate.DefaultIdlePolicy().Apply(ctx, svc, reader, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			st, err := svc.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantDesired := int32(1)
			if tc.wantIdle {
				wantDesired = 0
			}
			if d.Idle != tc.wantIdle || st.DesiredCount != wantDesired {
				t.Fatalf("decision %v (%s), desired %d; want idle=%v desired %d", d.Idle, d.Reason, st.DesiredCount, tc.wantIdle, wantDesired)
			}
		})
	}
}
