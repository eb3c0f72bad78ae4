package fargate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
)

type fakeECS struct {
	mu       sync.Mutex
	svc      *ecstypes.Service
	tasks    []ecstypes.Task
	updates  []int32
	failWith error
}

func (f *fakeECS) DescribeServices(_ context.Context, in *ecs.DescribeServicesInput, _ ...func(*ecs.Options)) (*ecs.DescribeServicesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	if f.svc == nil {
		return &ecs.DescribeServicesOutput{Failures: []ecstypes.Failure{{Reason: aws.String("MISSING")}}}, nil
	}
	return &ecs.DescribeServicesOutput{Services: []ecstypes.Service{*f.svc}}, nil
}

func (f *fakeECS) UpdateService(_ context.Context, in *ecs.UpdateServiceInput, _ ...func(*ecs.Options)) (*ecs.UpdateServiceOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.updates = append(f.updates, aws.ToInt32(in.DesiredCount))
	f.svc.DesiredCount = aws.ToInt32(in.DesiredCount)
	return &ecs.UpdateServiceOutput{Service: f.svc}, nil
}

func (f *fakeECS) ListTasks(_ context.Context, in *ecs.ListTasksInput, _ ...func(*ecs.Options)) (*ecs.ListTasksOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var arns []string
	for _, t := range f.tasks {
		arns = append(arns, aws.ToString(t.TaskArn))
	}
	return &ecs.ListTasksOutput{TaskArns: arns}, nil
}

func (f *fakeECS) DescribeTasks(_ context.Context, in *ecs.DescribeTasksInput, _ ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &ecs.DescribeTasksOutput{Tasks: f.tasks}, nil
}

type fakeEC2 map[string]string // eni → public ip

func (f fakeEC2) DescribeNetworkInterfaces(_ context.Context, in *ec2.DescribeNetworkInterfacesInput, _ ...func(*ec2.Options)) (*ec2.DescribeNetworkInterfacesOutput, error) {
	var out ec2.DescribeNetworkInterfacesOutput
	for _, id := range in.NetworkInterfaceIds {
		ni := ec2types.NetworkInterface{NetworkInterfaceId: aws.String(id)}
		if ip, ok := f[id]; ok && ip != "" {
			ni.Association = &ec2types.NetworkInterfaceAssociation{PublicIp: aws.String(ip)}
		}
		out.NetworkInterfaces = append(out.NetworkInterfaces, ni)
	}
	return &out, nil
}

func task(arn, group, last, eni string, started time.Time) ecstypes.Task {
	t := ecstypes.Task{TaskArn: aws.String(arn), Group: aws.String(group), LastStatus: aws.String(last), DesiredStatus: aws.String("RUNNING")}
	if eni != "" {
		t.Attachments = []ecstypes.Attachment{{Type: aws.String("ElasticNetworkInterface"), Details: []ecstypes.KeyValuePair{
			{Name: aws.String("subnetId"), Value: aws.String("subnet-1")},
			{Name: aws.String("networkInterfaceId"), Value: aws.String(eni)},
		}}}
	}
	if !started.IsZero() {
		t.StartedAt = aws.Time(started)
	}
	return t
}

func svc(desired, running, pending int32) *ecstypes.Service {
	return &ecstypes.Service{ServiceName: aws.String("srv"), Status: aws.String("ACTIVE"), DesiredCount: desired, RunningCount: running, PendingCount: pending}
}

func TestServiceStatus(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		svc    *ecstypes.Service
		tasks  []ecstypes.Task
		ips    fakeEC2
		want   lifecycle.State
		ip     string
		since  time.Time
		errIs  error
		taskSt string
	}{
		{name: "sleeping", svc: svc(0, 0, 0), want: lifecycle.StateSleeping},
		{name: "stopping", svc: svc(0, 1, 0), tasks: []ecstypes.Task{task("t1", "service:srv", "RUNNING", "eni-1", t0)},
			ips: fakeEC2{"eni-1": "203.0.113.1"}, want: lifecycle.StateStopping},
		{name: "starting, no task yet", svc: svc(1, 0, 0), want: lifecycle.StateStarting},
		{name: "starting, task provisioning", svc: svc(1, 0, 1),
			tasks: []ecstypes.Task{task("t1", "service:srv", "PROVISIONING", "eni-1", time.Time{})}, want: lifecycle.StateStarting, taskSt: "PROVISIONING"},
		{name: "starting, running without public ip", svc: svc(1, 1, 0),
			tasks: []ecstypes.Task{task("t1", "service:srv", "RUNNING", "eni-1", t0)}, ips: fakeEC2{}, want: lifecycle.StateStarting, since: t0, taskSt: "RUNNING"},
		{name: "running", svc: svc(1, 1, 0),
			tasks: []ecstypes.Task{task("t1", "service:srv", "RUNNING", "eni-1", t0)}, ips: fakeEC2{"eni-1": "203.0.113.1"},
			want: lifecycle.StateRunning, ip: "203.0.113.1", since: t0, taskSt: "RUNNING"},
		{name: "stray task of another group ignored", svc: svc(1, 1, 0),
			tasks: []ecstypes.Task{task("t9", "family:other", "RUNNING", "eni-9", t0)}, ips: fakeEC2{"eni-9": "198.51.100.9"}, want: lifecycle.StateStarting},
		{name: "replacement: old pending, new running", svc: svc(1, 1, 1),
			tasks: []ecstypes.Task{
				task("t1", "service:srv", "PENDING", "eni-1", time.Time{}),
				task("t2", "service:srv", "RUNNING", "eni-2", t0.Add(time.Minute)),
			}, ips: fakeEC2{"eni-2": "203.0.113.2"}, want: lifecycle.StateRunning, ip: "203.0.113.2", since: t0.Add(time.Minute), taskSt: "RUNNING"},
		{name: "missing service", svc: nil, errIs: ErrServiceNotFound},
		{name: "inactive service", svc: &ecstypes.Service{ServiceName: aws.String("srv"), Status: aws.String("INACTIVE")}, errIs: ErrServiceNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewService(ServiceConfig{Cluster: "c", Service: "srv"}, &fakeECS{svc: tc.svc, tasks: tc.tasks}, tc.ips, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Status(context.Background())
			if tc.errIs != nil {
				if !errors.Is(err, tc.errIs) {
					t.Fatalf("err = %v, want %v", err, tc.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.want || st.PublicIP != tc.ip || !st.Since.Equal(tc.since) || st.TaskStatus != tc.taskSt {
				t.Fatalf("status %+v, want state %s ip %q since %v task status %q", st, tc.want, tc.ip, tc.since, tc.taskSt)
			}
		})
	}
}

// failEC2 fails the test if the EC2 API is called at all.
type failEC2 struct{ t *testing.T }

func (f failEC2) DescribeNetworkInterfaces(context.Context, *ec2.DescribeNetworkInterfacesInput, ...func(*ec2.Options)) (*ec2.DescribeNetworkInterfacesOutput, error) {
	f.t.Error("EC2 called for a status without the public IP")
	return nil, errors.New("unexpected call")
}

// TestStatusWithoutIP: the idle policy's read of the service (status without the
// IP) makes no EC2 call, which is why the Sleep role has no EC2 permission.
func TestStatusWithoutIP(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	fe := &fakeECS{svc: svc(1, 1, 0), tasks: []ecstypes.Task{task("t1", "service:srv", "RUNNING", "eni-1", t0)}}
	s, err := NewService(ServiceConfig{Cluster: "c", Service: "srv"}, fe, failEC2{t}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.status(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != lifecycle.StateRunning || st.PublicIP != "" || !st.Since.Equal(t0) || st.DesiredCount != 1 {
		t.Fatalf("status %+v, want running since %v without an IP", st, t0)
	}
}

func TestServiceWakeKill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := &fakeECS{svc: svc(0, 0, 0)}
	s, err := NewService(DefaultServiceConfig(), f, fakeEC2{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Wake(ctx)
	if err != nil || st.State != lifecycle.StateStarting || st.DesiredCount != 1 {
		t.Fatalf("first wake = %+v, %v", st, err)
	}
	if _, err := s.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.updates) != 1 {
		t.Fatalf("updates %v: a second wake must not write", f.updates)
	}
	st, err = s.Kill(ctx)
	if err != nil || st.DesiredCount != 0 || f.updates[len(f.updates)-1] != 0 {
		t.Fatalf("kill = %+v, %v (updates %v)", st, err, f.updates)
	}

	f.failWith = errors.New("throttled")
	if _, err := s.Wake(ctx); err == nil || !errors.Is(err, f.failWith) {
		t.Fatalf("wake with a failing ecs: %v, want the cause wrapped", err)
	}
	if err := s.SetDesiredCount(ctx, -1); err == nil {
		t.Fatal("negative desired count accepted")
	}
}

func TestServiceConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg ServiceConfig
		ok  bool
	}{
		{DefaultServiceConfig(), true},
		{ServiceConfig{Cluster: "c"}, false},
		{ServiceConfig{Service: "s"}, false},
		{ServiceConfig{Cluster: " ", Service: "s"}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
	if _, err := NewService(DefaultServiceConfig(), nil, fakeEC2{}, zerolog.Nop()); err == nil {
		t.Error("nil ecs client accepted")
	}
}
