package fargate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	tagCalls []map[string]string
	failWith error
}

func (f *fakeECS) TagResource(_ context.Context, in *ecs.TagResourceInput, _ ...func(*ecs.Options)) (*ecs.TagResourceOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	call := map[string]string{}
	for _, t := range in.Tags {
		call[aws.ToString(t.Key)] = aws.ToString(t.Value)
		found := false
		for i := range f.svc.Tags {
			if aws.ToString(f.svc.Tags[i].Key) == aws.ToString(t.Key) {
				f.svc.Tags[i].Value, found = t.Value, true
			}
		}
		if !found {
			f.svc.Tags = append(f.svc.Tags, t)
		}
	}
	f.tagCalls = append(f.tagCalls, call)
	return &ecs.TagResourceOutput{}, nil
}

func (f *fakeECS) tag(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.svc.Tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
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
		if aws.ToString(t.DesiredStatus) == string(in.DesiredStatus) {
			arns = append(arns, aws.ToString(t.TaskArn))
		}
	}
	return &ecs.ListTasksOutput{TaskArns: arns}, nil
}

func (f *fakeECS) DescribeTasks(_ context.Context, in *ecs.DescribeTasksInput, _ ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out ecs.DescribeTasksOutput
	for _, t := range f.tasks {
		for _, a := range in.Tasks {
			if a == aws.ToString(t.TaskArn) {
				out.Tasks = append(out.Tasks, t)
			}
		}
	}
	return &out, nil
}

type fakeEC2 map[string]string // eni → public ip

func (f fakeEC2) PublicIPs(_ context.Context, eniIDs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, id := range eniIDs {
		if ip, ok := f[id]; ok && ip != "" {
			out[id] = ip
		}
	}
	return out, nil
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

// stopping marks a task ECS has begun to stop while a listing still shows
// it wanted RUNNING.
func stopping(t ecstypes.Task) ecstypes.Task {
	t.StoppingAt = aws.Time(time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC))
	return t
}

func startedBy(t ecstypes.Task, deployment string) ecstypes.Task {
	t.StartedBy = aws.String(deployment)
	return t
}

func healthy(t ecstypes.Task) ecstypes.Task {
	t.HealthStatus = ecstypes.HealthStatusHealthy
	return t
}

func unhealthy(t ecstypes.Task) ecstypes.Task {
	t.HealthStatus = ecstypes.HealthStatusUnhealthy
	return t
}

// deployments gives s a PRIMARY deployment and older ACTIVE ones.
func deployments(s *ecstypes.Service, primary string, older ...string) *ecstypes.Service {
	for _, id := range older {
		s.Deployments = append(s.Deployments, ecstypes.Deployment{Id: aws.String(id), Status: aws.String("ACTIVE")})
	}
	s.Deployments = append(s.Deployments, ecstypes.Deployment{Id: aws.String(primary), Status: aws.String("PRIMARY")})
	return s
}

func svc(desired, running, pending int32) *ecstypes.Service {
	return &ecstypes.Service{ServiceName: aws.String("srv"), ServiceArn: aws.String("arn:aws:ecs:us-east-1:123456789012:service/c/srv"),
		Status: aws.String("ACTIVE"), DesiredCount: desired, RunningCount: running, PendingCount: pending}
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
		// After a replacement or an upgrade, never the task on its way out,
		// whatever ECS's listing order.
		{name: "replacement: the draining task still listed, the new one running", svc: svc(1, 2, 0),
			tasks: []ecstypes.Task{
				stopping(task("t1", "service:srv", "RUNNING", "eni-1", t0)),
				task("t2", "service:srv", "RUNNING", "eni-2", t0.Add(time.Minute)),
			}, ips: fakeEC2{"eni-1": "203.0.113.1", "eni-2": "203.0.113.2"}, want: lifecycle.StateRunning, ip: "203.0.113.2", since: t0, taskSt: "RUNNING"},
		{name: "replacement: only the draining task runs", svc: svc(1, 1, 1),
			tasks: []ecstypes.Task{
				stopping(task("t1", "service:srv", "RUNNING", "eni-1", t0)),
				task("t2", "service:srv", "PROVISIONING", "eni-2", time.Time{}),
			}, ips: fakeEC2{"eni-1": "203.0.113.1", "eni-2": "203.0.113.2"}, want: lifecycle.StateStarting, since: t0, taskSt: "RUNNING"},
		{name: "replacement: the old task deactivating", svc: svc(1, 1, 0),
			tasks: []ecstypes.Task{
				task("t1", "service:srv", "DEACTIVATING", "eni-1", t0),
				task("t2", "service:srv", "RUNNING", "eni-2", t0.Add(time.Minute)),
			}, ips: fakeEC2{"eni-1": "203.0.113.1", "eni-2": "203.0.113.2"}, want: lifecycle.StateRunning, ip: "203.0.113.2", since: t0, taskSt: "RUNNING"},
		{name: "upgrade: the primary deployment's task before an older one, healthy or not", svc: deployments(svc(1, 2, 0), "ecs-svc/new", "ecs-svc/old"),
			tasks: []ecstypes.Task{
				healthy(startedBy(task("t1", "service:srv", "RUNNING", "eni-1", t0.Add(time.Hour)), "ecs-svc/old")),
				startedBy(task("t2", "service:srv", "RUNNING", "eni-2", t0), "ecs-svc/new"),
			}, ips: fakeEC2{"eni-1": "203.0.113.1", "eni-2": "203.0.113.2"}, want: lifecycle.StateRunning, ip: "203.0.113.2", since: t0, taskSt: "RUNNING"},
		{name: "a healthy task before an unhealthy newer one", svc: svc(1, 2, 0),
			tasks: []ecstypes.Task{
				unhealthy(task("t1", "service:srv", "RUNNING", "eni-1", t0.Add(time.Minute))),
				healthy(task("t2", "service:srv", "RUNNING", "eni-2", t0)),
			}, ips: fakeEC2{"eni-1": "203.0.113.1", "eni-2": "203.0.113.2"}, want: lifecycle.StateRunning, ip: "203.0.113.2", since: t0, taskSt: "RUNNING"},
		{name: "the newest of two alike", svc: svc(1, 2, 0),
			tasks: []ecstypes.Task{
				task("t1", "service:srv", "RUNNING", "eni-1", t0),
				task("t2", "service:srv", "RUNNING", "eni-2", t0.Add(time.Minute)),
			}, ips: fakeEC2{"eni-1": "203.0.113.1", "eni-2": "203.0.113.2"}, want: lifecycle.StateRunning, ip: "203.0.113.2", since: t0, taskSt: "RUNNING"},
		{name: "the best task without a public ip yet: the next one", svc: svc(1, 2, 0),
			tasks: []ecstypes.Task{
				task("t1", "service:srv", "RUNNING", "eni-1", t0),
				task("t2", "service:srv", "RUNNING", "eni-2", t0.Add(time.Minute)),
			}, ips: fakeEC2{"eni-1": "203.0.113.1"}, want: lifecycle.StateRunning, ip: "203.0.113.1", since: t0, taskSt: "RUNNING"},
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

func (f failEC2) PublicIPs(context.Context, []string) (map[string]string, error) {
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
	st, err := s.status(context.Background(), false, time.Now())
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

// Wake records itself in the service's tags: both tags when it raises the
// count, a refresh of last-wake at most once per WakeRecordEvery on a
// running service, and it always clears a pending idle observation.
func TestServiceWakeRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	clock := t0
	f := &fakeECS{svc: svc(0, 0, 0)}
	s, err := NewService(DefaultServiceConfig(), f, fakeEC2{"eni-1": "203.0.113.1"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return clock }
	if _, err := s.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	if f.tag(TagLastWake) != epoch(t0) || f.tag(TagWokenAt) != epoch(t0) || len(f.updates) != 1 {
		t.Fatalf("after waking from 0: tags %+v, updates %v", f.svc.Tags, f.updates)
	}
	f.tasks = []ecstypes.Task{task("t1", "service:srv", "RUNNING", "eni-1", t0)}
	clock = t0.Add(30 * time.Second)
	if st, err := s.Wake(ctx); err != nil || st.State != lifecycle.StateRunning || !st.WokenAt.Equal(t0) {
		t.Fatalf("poll = %+v, %v", st, err)
	}
	if len(f.tagCalls) != 1 {
		t.Fatalf("a poll within WakeRecordEvery wrote tags: %v", f.tagCalls)
	}
	// A running-but-idle server woken again later: the Wake is on record.
	clock = t0.Add(40 * time.Minute)
	if _, err := s.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	if f.tag(TagLastWake) != epoch(clock) || f.tag(TagWokenAt) != epoch(t0) || len(f.updates) != 1 {
		t.Fatalf("wake on a running service: tags %+v, updates %v", f.svc.Tags, f.updates)
	}
	// An idle observation is cleared by the next Wake, however recent the last.
	f.svc.Tags = append(f.svc.Tags, ecstypes.Tag{Key: aws.String(TagIdleSince), Value: aws.String(epoch(clock))})
	clock = clock.Add(time.Second)
	if _, err := s.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	if f.tag(TagIdleSince) != "" {
		t.Fatalf("idle observation survived a Wake: %+v", f.svc.Tags)
	}
}

func stopped(arn, reason string, code ecstypes.TaskStopCode, started, stoppedAt time.Time, exit *int32) ecstypes.Task {
	t := task(arn, "service:srv", "STOPPED", "", started)
	t.DesiredStatus = aws.String("STOPPED")
	t.StoppedReason = aws.String(reason)
	t.StopCode = code
	if !stoppedAt.IsZero() {
		t.StoppedAt = aws.Time(stoppedAt)
	}
	if exit != nil {
		t.Containers = []ecstypes.Container{{Name: aws.String("server"), ExitCode: exit}}
	}
	return t
}

// Failed starts are counted since the Wake that raised the count, within
// the window, from failures only, and reported with a redacted reason.
func TestServiceFailedStarts(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	one := int32(1)
	woken := func(at time.Time) *ecstypes.Service {
		s := svc(1, 0, 1)
		s.Tags = []ecstypes.Tag{{Key: aws.String(TagWokenAt), Value: aws.String(epoch(at))}}
		return s
	}
	tests := []struct {
		name   string
		svc    *ecstypes.Service
		tasks  []ecstypes.Task
		state  lifecycle.State
		count  int32
		reason string
	}{
		{"two crashes", woken(ago(10 * time.Minute)), []ecstypes.Task{
			stopped("s1", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(8*time.Minute), ago(7*time.Minute), &one),
			stopped("s2", "CannotPullContainerError: pull arn:aws:ecr:eu-west-1:123456789012:repository/x denied", ecstypes.TaskStopCodeTaskFailedToStart, ago(3*time.Minute), ago(2*time.Minute), nil),
			task("t3", "service:srv", "PROVISIONING", "", time.Time{}),
		}, lifecycle.StateFailed, 2, "CannotPullContainerError: pull <arn> denied"},
		{"exit code in the reason", woken(ago(10 * time.Minute)), []ecstypes.Task{
			stopped("s1", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(8*time.Minute), ago(7*time.Minute), &one),
			stopped("s2", "Task failed container health checks", ecstypes.TaskStopCodeServiceSchedulerInitiated, ago(4*time.Minute), ago(3*time.Minute), &one),
		}, lifecycle.StateFailed, 2, "Task failed container health checks; container server: exit code 1"},
		{"stops on purpose are no failures", woken(ago(10 * time.Minute)), []ecstypes.Task{
			stopped("s1", "Scaling activity initiated by (deployment ecs-svc/1)", ecstypes.TaskStopCodeServiceSchedulerInitiated, ago(8*time.Minute), ago(7*time.Minute), nil),
			stopped("s2", "Task stopped by user", ecstypes.TaskStopCodeUserInitiated, ago(4*time.Minute), ago(3*time.Minute), &one),
		}, lifecycle.StateStarting, 0, ""},
		{"failures before the Wake do not count", woken(ago(5 * time.Minute)), []ecstypes.Task{
			stopped("s1", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(8*time.Minute), ago(7*time.Minute), &one),
			stopped("s2", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(4*time.Minute), ago(3*time.Minute), &one),
		}, lifecycle.StateStarting, 1, ""},
		{"failures outside the window do not count", svc(1, 0, 0), []ecstypes.Task{
			stopped("s1", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(48*time.Minute), ago(47*time.Minute), &one),
			stopped("s2", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(4*time.Minute), ago(3*time.Minute), &one),
		}, lifecycle.StateStarting, 1, ""},
		{"a running task wins", woken(ago(10 * time.Minute)), []ecstypes.Task{
			stopped("s1", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(8*time.Minute), ago(7*time.Minute), &one),
			stopped("s2", "Essential container in task exited", ecstypes.TaskStopCodeEssentialContainerExited, ago(4*time.Minute), ago(3*time.Minute), &one),
			task("t3", "service:srv", "RUNNING", "eni-3", ago(time.Minute)),
		}, lifecycle.StateRunning, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewService(ServiceConfig{Cluster: "c", Service: "srv"}, &fakeECS{svc: tc.svc, tasks: tc.tasks}, fakeEC2{"eni-3": "203.0.113.3"}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			s.now = func() time.Time { return now }
			st, err := s.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.FailedStarts != tc.count || (tc.reason != "" && st.FailureReason != tc.reason) {
				t.Fatalf("status %s, %d failed (%q); want %s, %d (%q)", st.State, st.FailedStarts, st.FailureReason, tc.state, tc.count, tc.reason)
			}
			if strings.Contains(st.FailureReason, "123456789012") {
				t.Fatal("account id in the reason")
			}
			if tc.state == lifecycle.StateFailed && !st.FailingSince.Equal(ago(8*time.Minute)) {
				t.Fatalf("failing since %v, want the first failed task's start", st.FailingSince)
			}
		})
	}
}
