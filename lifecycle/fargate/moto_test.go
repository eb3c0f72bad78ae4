package fargate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
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
	pcfg := usage.DefaultPublisherConfig()
	pcfg.Service = "round-trip"
	last := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	pub, err := usage.NewPublisherFromConfig(cfg, pcfg, stats{active: 3, last: last}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := pub.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	mcfg := usage.DefaultMetricsConfig()
	mcfg.Service = "round-trip"
	r, err := usage.NewMetricsReaderFromConfig(cfg, mcfg)
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
			pcfg := usage.DefaultPublisherConfig()
			pcfg.Service, pcfg.Interval = f.Service, 20*time.Millisecond
			pub, err := usage.NewPublisherFromConfig(cfg, pcfg, tc.src, zerolog.Nop())
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
			mcfg := usage.DefaultMetricsConfig()
			mcfg.Service = f.Service
			reader, err := usage.NewMetricsReaderFromConfig(cfg, mcfg)
			if err != nil {
				t.Fatal(err)
			}
			// Two checks, the second at least ConfirmAfter after the first.
			now := time.Now()
			d, err := fargate.DefaultIdlePolicy().Apply(ctx, svc, reader, now)
			if err != nil {
				t.Fatal(err)
			}
			if d.ScaleToZero {
				t.Fatalf("the first check scaled to zero: %s", d.Reason)
			}
			d, err = fargate.DefaultIdlePolicy().Apply(ctx, svc, reader, now.Add(fargate.DefaultConfirmAfter))
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
			if d.Idle != tc.wantIdle || d.ScaleToZero != tc.wantIdle || st.DesiredCount != wantDesired {
				t.Fatalf("decision %v (%s), desired %d; want idle=%v desired %d", d.Idle, d.Reason, st.DesiredCount, tc.wantIdle, wantDesired)
			}
		})
	}
}

// putAt writes one datapoint of each metric with the timestamp at, as the
// server's publisher would have at that moment: the way to model metric lag
// (a datapoint older than the Wake) and a clock moving on.
func putAt(t *testing.T, cw *cloudwatch.Client, service string, at time.Time, active float64, last time.Time) {
	t.Helper()
	dims := []cwtypes.Dimension{{Name: aws.String(usage.DimensionService), Value: aws.String(service)}}
	if _, err := cw.PutMetricData(context.Background(), &cloudwatch.PutMetricDataInput{
		Namespace: aws.String(usage.DefaultNamespace),
		MetricData: []cwtypes.MetricDatum{
			{MetricName: aws.String(usage.MetricActiveConnections), Dimensions: dims, Timestamp: aws.Time(at), Value: aws.Float64(active)},
			{MetricName: aws.String(usage.MetricLastActivity), Dimensions: dims, Timestamp: aws.Time(at), Value: aws.Float64(float64(last.Unix()))},
		},
	}); err != nil {
		t.Fatal(err)
	}
}

// The race of issue 10 on moto: a running server whose newest datapoint
// (published before the Wake) says idle is not put to sleep right after a
// Wake; later it needs two idle checks in a row, and activity in between
// starts the count again.
func TestWakeSleepRaceMoto(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	cfg := awstest.AWSConfig(endpoint)
	f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "race", Service: "svc-race", DesiredCount: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := fargate.NewFromConfig(cfg, fargate.ServiceConfig{Cluster: f.Cluster, Service: f.Service}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	mcfg := usage.DefaultMetricsConfig()
	mcfg.Service = f.Service
	reader, err := usage.NewMetricsReaderFromConfig(cfg, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	cw := usage.NewCloudWatchClient(cfg)
	policy := fargate.DefaultIdlePolicy()
	t0 := time.Now()
	longAgo := t0.Add(-time.Hour)
	// Lag: the newest datapoint is a minute old and idle.
	putAt(t, cw, f.Service, t0.Add(-time.Minute), 0, longAgo)

	st, err := svc.Wake(ctx)
	if err != nil || st.State != lifecycle.StateRunning {
		t.Fatalf("wake = %+v, %v; want running", st, err)
	}
	check := func(at time.Time, wantIdle, wantScaled bool) fargate.Decision {
		t.Helper()
		d, err := policy.Apply(ctx, svc, reader, at)
		if err != nil {
			t.Fatal(err)
		}
		if d.Idle != wantIdle || d.ScaleToZero != wantScaled {
			t.Fatalf("check at t0+%s: idle %v scaled %v (%s); want idle %v scaled %v",
				at.Sub(t0).Round(time.Second), d.Idle, d.ScaleToZero, d.Reason, wantIdle, wantScaled)
		}
		return d
	}
	desired := func() int32 {
		t.Helper()
		st, err := svc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.DesiredCount
	}
	// Seconds after the Wake: the stale datapoint says idle, the grace wins.
	if d := check(t0.Add(5*time.Second), false, false); !strings.Contains(d.Reason, "grace") {
		t.Fatalf("reason %q does not name the grace period", d.Reason)
	}
	// Past the grace, still idle: the first idle check only records it…
	g := policy.WakeGrace
	putAt(t, cw, f.Service, t0.Add(g), 0, longAgo)
	check(t0.Add(g+10*time.Second), true, false)
	// …a duplicate invocation seconds later does not confirm it…
	check(t0.Add(g+20*time.Second), true, false)
	// …activity in between starts over…
	putAt(t, cw, f.Service, t0.Add(g+4*time.Minute), 1, t0.Add(g+4*time.Minute))
	check(t0.Add(g+5*time.Minute), false, false)
	putAt(t, cw, f.Service, t0.Add(g+29*time.Minute), 0, t0.Add(g+4*time.Minute))
	check(t0.Add(g+30*time.Minute), true, false)
	if desired() != 1 {
		t.Fatal("scaled to zero on a single idle check")
	}
	// …and the next idle check five minutes later puts it to sleep.
	putAt(t, cw, f.Service, t0.Add(g+34*time.Minute), 0, t0.Add(g+4*time.Minute))
	check(t0.Add(g+35*time.Minute), true, true)
	if desired() != 0 {
		t.Fatal("idle on two checks in a row but not scaled to zero")
	}
}

// A service whose tasks keep failing: Wake reports failed with the reason,
// and Sleep scales it to 0 once it has failed for the crash bound, although
// a new task keeps appearing.
func TestCrashLoopMoto(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	cfg := awstest.AWSConfig(endpoint)
	f := awstest.Seed(t, endpoint, awstest.SeedConfig{Cluster: "crash", Service: "svc-crash", NoTask: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := fargate.NewFromConfig(cfg, fargate.ServiceConfig{Cluster: f.Cluster, Service: f.Service}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ecsc := ecs.NewFromConfig(cfg)
	if st, err := svc.Wake(ctx); err != nil || st.State != lifecycle.StateStarting {
		t.Fatalf("wake = %+v, %v", st, err)
	}
	crash := func(reason string) {
		t.Helper()
		arn, _ := f.StartTask(t, "")
		if _, err := ecsc.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(f.Cluster), Task: aws.String(arn), Reason: aws.String(reason)}); err != nil {
			t.Fatal(err)
		}
	}
	// A stop on purpose is no failure.
	crash("Scaling activity initiated by (deployment ecs-svc/123)")
	crash("Essential container in task exited")
	st, err := svc.Wake(ctx)
	if err != nil || st.State != lifecycle.StateStarting || st.FailedStarts != 1 {
		t.Fatalf("after one failure: %+v, %v; want starting with 1 failed start", st, err)
	}
	crash("Task failed container health checks")
	st, err = svc.Wake(ctx)
	if err != nil || st.State != lifecycle.StateFailed || st.FailedStarts != 2 || st.FailureReason == "" {
		t.Fatalf("after two failures: %+v, %v; want failed with a reason", st, err)
	}
	res := fargate.ResultFromStatus(st, 8443)
	if res.State != lifecycle.StateFailed || !strings.Contains(res.Reason, "health checks") {
		t.Fatalf("answer %+v, want failed with the newest reason", res)
	}

	// ECS starts yet another task (RUNNING for now): Sleep still sees the loop.
	f.StartTask(t, "")
	mcfg := usage.DefaultMetricsConfig()
	mcfg.Service = f.Service
	reader, err := usage.NewMetricsReaderFromConfig(cfg, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	p := fargate.DefaultIdlePolicy()
	if d, err := p.Apply(ctx, svc, reader, time.Now()); err != nil || d.Idle {
		t.Fatalf("right after the failures: %+v, %v; want not idle yet (under the crash bound)", d, err)
	}
	d, err := p.Apply(ctx, svc, reader, time.Now().Add(p.CrashBound+time.Minute))
	if err != nil || !d.ScaleToZero || !strings.Contains(d.Reason, "crash loop") {
		t.Fatalf("past the crash bound: %+v, %v; want scaled to zero as a crash loop", d, err)
	}
	if st, err := svc.Status(ctx); err != nil || st.DesiredCount != 0 {
		t.Fatalf("after the crash-loop sleep: %+v, %v; want desired 0", st, err)
	}
	// A new Wake starts a new count.
	if st, err := svc.Wake(ctx); err != nil || st.State != lifecycle.StateStarting || st.FailedStarts != 0 {
		t.Fatalf("wake after the sleep: %+v, %v; want starting afresh", st, err)
	}
}
