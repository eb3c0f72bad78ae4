package awstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/awstest"
	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
)

// The seeded service must look, through the product code, like a real
// Fargate service with a running, reachable task.
func TestSeedLooksRunning(t *testing.T) {
	t.Parallel()
	endpoint := awstest.StartMoto(t)
	f := awstest.Seed(t, endpoint, awstest.SeedConfig{DesiredCount: 1, PublicIP: "127.0.0.1"})
	svc, err := fargate.NewFromConfig(awstest.AWSConfig(endpoint), fargate.ServiceConfig{Cluster: f.Cluster, Service: f.Service}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Twice: the task must not drift to STOPPED on repeated DescribeTasks.
	for i := 0; i < 2; i++ {
		st, err := svc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != lifecycle.StateRunning || st.PublicIP != "127.0.0.1" || st.TaskARN != f.TaskARN {
			t.Fatalf("status %d = %+v, want running at 127.0.0.1 (task %s)", i, st, f.TaskARN)
		}
	}
}
