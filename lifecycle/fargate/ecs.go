package fargate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"

	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

// ErrServiceNotFound is returned when the ECS service does not exist or is not ACTIVE.
var ErrServiceNotFound = errors.New("ecs service not found")

// ErrClusterNotFound is returned when the ECS cluster does not exist.
var ErrClusterNotFound = errors.New("ecs cluster not found")

// notFound adds ErrClusterNotFound or ErrServiceNotFound to the ECS errors
// that mean "no such cluster/service", so callers can tell a misconfigured
// stack (never worth retrying) from AWS trouble.
func notFound(err error) error {
	var cnf *ecstypes.ClusterNotFoundException
	var snf *ecstypes.ServiceNotFoundException
	var sna *ecstypes.ServiceNotActiveException
	switch {
	case errors.As(err, &cnf):
		return fmt.Errorf("%w: %w", ErrClusterNotFound, err)
	case errors.As(err, &snf), errors.As(err, &sna):
		return fmt.Errorf("%w: %w", ErrServiceNotFound, err)
	}
	return err
}

// ECSAPI is the part of the ECS client that [Service] uses; *ecs.Client implements it.
type ECSAPI interface {
	DescribeServices(ctx context.Context, in *ecs.DescribeServicesInput, optFns ...func(*ecs.Options)) (*ecs.DescribeServicesOutput, error)
	UpdateService(ctx context.Context, in *ecs.UpdateServiceInput, optFns ...func(*ecs.Options)) (*ecs.UpdateServiceOutput, error)
	ListTasks(ctx context.Context, in *ecs.ListTasksInput, optFns ...func(*ecs.Options)) (*ecs.ListTasksOutput, error)
	DescribeTasks(ctx context.Context, in *ecs.DescribeTasksInput, optFns ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error)
	TagResource(ctx context.Context, in *ecs.TagResourceInput, optFns ...func(*ecs.Options)) (*ecs.TagResourceOutput, error)
}

// Tags on the ECS service in which the control plane keeps its memory. A
// service tag is read with the DescribeServices call every Lambda makes
// anyway (include TAGS), is consistent within a second or so (unlike a
// CloudWatch datapoint, which GetMetricData may not return for minutes), and
// is written with ecs:TagResource, which IAM scopes to the one service ARN.
// Values are Unix seconds; an empty value means "none".
const (
	// TagLastWake is the time of the newest Wake call (refreshed at most once
	// per [WakeRecordEvery]). The Sleep policy gives a server a grace period
	// after it, so a Wake on a running-but-idle server is not undone by a
	// datapoint published before the Wake.
	TagLastWake = "fluidity:last-wake"
	// TagWokenAt is the time of the Wake that raised the desired count from
	// 0: the start of this wake-up, from which failed task starts are counted.
	TagWokenAt = "fluidity:woken-at"
	// TagIdleSince is the Sleep policy's first idle observation in a row;
	// the service is scaled to 0 only when a later check confirms it.
	TagIdleSince = "fluidity:idle-since"
)

// WakeRecordEvery bounds how often a Wake on a running service rewrites
// TagLastWake: the agent polls Wake every 2 s while it waits, and the grace
// period is minutes long.
const WakeRecordEvery = time.Minute

// EC2API is the EC2 call [Service] makes: the public IPv4 address of each
// of the given network interfaces that has one, by interface ID
// (ec2:DescribeNetworkInterfaces). [NewFromConfig] gives Fluidity's own
// small EC2 client, not the SDK's, which alone cost minutes of compile time.
type EC2API interface {
	PublicIPs(ctx context.Context, eniIDs []string) (map[string]string, error)
}

// ServiceConfig names the ECS service that runs the Fluidity server.
type ServiceConfig struct {
	// Cluster is the ECS cluster name or ARN.
	Cluster string
	// Service is the ECS service name or ARN.
	Service string
	// FailureWindow is how far back stopped tasks count as failed starts
	// (never before the Wake that raised the count, [TagWokenAt]); zero
	// means [DefaultFailureWindow]. ECS keeps stopped tasks listed for
	// about an hour.
	FailureWindow time.Duration
}

// DefaultFailureWindow is the default of [ServiceConfig.FailureWindow].
const DefaultFailureWindow = 30 * time.Minute

// FailedStartsLimit is how many failed task starts or crashes make the state
// lifecycle.StateFailed (and, kept up long enough, a crash loop for the
// idle policy). One failure is often bad luck (a capacity or pull hiccup
// that ECS's retry mends); two in a row are a pattern.
const FailedStartsLimit = 2

func (c ServiceConfig) failureWindow() time.Duration {
	if c.FailureWindow > 0 {
		return c.FailureWindow
	}
	return DefaultFailureWindow
}

// DefaultServiceConfig returns the names used by infra/fargate.yaml's defaults.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{Cluster: "fluidity", Service: usage.DefaultService}
}

// Validate reports a missing cluster or service name.
func (c ServiceConfig) Validate() error {
	if strings.TrimSpace(c.Cluster) == "" {
		return errors.New("fargate: cluster name is empty")
	}
	if strings.TrimSpace(c.Service) == "" {
		return errors.New("fargate: service name is empty")
	}
	return nil
}

// Status is a snapshot of the service.
type Status struct {
	State lifecycle.State
	// DesiredCount, RunningCount and PendingCount come from the ECS service.
	DesiredCount, RunningCount, PendingCount int32
	// PublicIP of the task the agent should dial; set only in lifecycle.StateRunning.
	PublicIP string
	// TaskARN and TaskStatus (ECS lastStatus) of the task chosen for PublicIP,
	// or of the most advanced task when none is running yet.
	TaskARN    string
	TaskStatus string
	// Since is when the oldest live task of the service was started (or
	// created, before it started); zero when there is no task or ECS did not
	// say. The idle policy uses it to tell "just woke up" from "silent for long".
	Since time.Time
	// RunningSince is when the longest-running task in lastStatus RUNNING
	// started; zero when none runs.
	RunningSince time.Time
	// Healthy is true when a live task reports healthStatus HEALTHY (the
	// container health check of infra/fargate.yaml).
	Healthy bool

	// ServiceARN is the service's ARN, which tags are written to.
	ServiceARN string
	// LastWake, WokenAt and IdleSince are read from the service's tags
	// ([TagLastWake], [TagWokenAt], [TagIdleSince]); zero when absent.
	LastWake, WokenAt, IdleSince time.Time

	// FailedStarts counts the service's tasks that failed to start or
	// crashed (see [failedStop]) since WokenAt, within the failure window.
	// Counted only when no task is running with an address (Wake) and on
	// every idle check (Sleep).
	FailedStarts int32
	// FailureReason describes the newest of them: ECS's stoppedReason and
	// the essential containers' exit codes, ARNs redacted.
	FailureReason string
	// FailingSince is the earliest start (or creation) of the counted failed
	// tasks; zero when ECS gave no time.
	FailingSince time.Time
}

// ResultFromStatus turns a [Status] into the Wake/Kill API's answer; port is
// the tunnel port the server listens on.
func ResultFromStatus(st Status, port int) lifecycle.WakeResult {
	r := lifecycle.WakeResult{State: st.State, DesiredCount: st.DesiredCount, RunningCount: st.RunningCount, PendingCount: st.PendingCount,
		FailedStarts: st.FailedStarts}
	if st.State == lifecycle.StateFailed {
		r.Reason = st.FailureReason
	}
	if st.State == lifecycle.StateRunning && st.PublicIP != "" {
		r.Address = net.JoinHostPort(st.PublicIP, strconv.Itoa(port))
	}
	return r
}

// Service controls one ECS service. It is safe for concurrent use.
type Service struct {
	cfg ServiceConfig
	ecs ECSAPI
	ec2 EC2API
	log zerolog.Logger
	now func() time.Time
}

// NewService returns a Service over the given clients.
func NewService(cfg ServiceConfig, ecsAPI ECSAPI, ec2API EC2API, log zerolog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ecsAPI == nil || ec2API == nil {
		return nil, errors.New("fargate: nil ecs or ec2 client")
	}
	return &Service{cfg: cfg, ecs: ecsAPI, ec2: ec2API, log: log, now: time.Now}, nil
}

// SetDesiredCount sets the service's desired count. Setting the current value
// again is harmless (ECS treats it as a no-op).
func (s *Service) SetDesiredCount(ctx context.Context, n int32) error {
	_, err := s.update(ctx, n)
	return err
}

func (s *Service) update(ctx context.Context, n int32) (*ecstypes.Service, error) {
	if n < 0 {
		return nil, fmt.Errorf("fargate: negative desired count %d", n)
	}
	out, err := s.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster:      aws.String(s.cfg.Cluster),
		Service:      aws.String(s.cfg.Service),
		DesiredCount: aws.Int32(n),
	})
	if err != nil {
		return nil, fmt.Errorf("set desired count of %s/%s to %d: %w", s.cfg.Cluster, s.cfg.Service, n, notFound(err))
	}
	s.log.Info().Str("cluster", s.cfg.Cluster).Str("service", s.cfg.Service).Int32("desired_count", n).Msg("desired count set")
	return out.Service, nil
}

// Wake makes sure the service wants one task, records the Wake in the
// service's tags, and returns the resulting status.
//
// On a sleeping service it tags [TagLastWake] and [TagWokenAt] first and then
// raises the desired count to 1. On a service that already wants a task it
// refreshes [TagLastWake] when the recorded one is older than
// [WakeRecordEvery], so repeated polls cost one read each and a Wake on a
// running-but-idle server is still on record for the Sleep policy. Either way
// it clears [TagIdleSince]: a Wake breaks a run of idle checks.
//
// A failure to write the tags is logged and does not fail the Wake: waking
// matters more than the race it protects against (the Sleep policy's two
// consecutive checks remain).
func (s *Service) Wake(ctx context.Context) (Status, error) {
	now := s.now()
	st, err := s.status(ctx, true, now)
	if err != nil {
		return Status{}, err
	}
	if st.DesiredCount >= 1 {
		if now.Sub(st.LastWake) >= WakeRecordEvery || !st.IdleSince.IsZero() {
			s.tag(ctx, st.ServiceARN, map[string]string{TagLastWake: epoch(now), TagIdleSince: ""})
		}
		return st, nil
	}
	// Tag before the update: a Sleep run between the two then already sees the Wake.
	s.tag(ctx, st.ServiceARN, map[string]string{TagLastWake: epoch(now), TagWokenAt: epoch(now), TagIdleSince: ""})
	if err := s.SetDesiredCount(ctx, 1); err != nil {
		return Status{}, err
	}
	// Report what was just asked for rather than re-reading: ECS counts lag
	// the update by seconds and the next poll will see the real progress.
	st.DesiredCount = 1
	st.State = lifecycle.StateStarting
	st.PublicIP = ""
	st.LastWake, st.WokenAt, st.IdleSince = now, now, time.Time{}
	st.FailedStarts, st.FailureReason, st.FailingSince = 0, "", time.Time{}
	return st, nil
}

// tag writes tags on the service and logs (only) a failure.
func (s *Service) tag(ctx context.Context, arn string, tags map[string]string) {
	if err := s.SetTags(ctx, arn, tags); err != nil {
		s.log.Error().Err(err).Msg("recording in the service's tags failed (is ecs:TagResource on the service granted?)")
	}
}

// SetTags writes tags on the service whose ARN is arn (from [Status.ServiceARN]).
func (s *Service) SetTags(ctx context.Context, arn string, tags map[string]string) error {
	if arn == "" {
		return errors.New("fargate: tag: the service ARN is unknown")
	}
	in := &ecs.TagResourceInput{ResourceArn: aws.String(arn)}
	for k, v := range tags {
		in.Tags = append(in.Tags, ecstypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := s.ecs.TagResource(ctx, in); err != nil {
		return fmt.Errorf("tag service %s: %w", arn, notFound(err))
	}
	return nil
}

func epoch(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func parseEpoch(v string) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}

// Kill sets the desired count to 0 and returns the resulting status, taken
// from the update's answer: a second read could race the update, and the
// Kill role is deliberately not allowed to list tasks.
func (s *Service) Kill(ctx context.Context) (Status, error) {
	svc, err := s.update(ctx, 0)
	if err != nil {
		return Status{}, err
	}
	st := Status{State: lifecycle.StateSleeping}
	if svc != nil {
		st.RunningCount, st.PendingCount = svc.RunningCount, svc.PendingCount
	}
	if st.RunningCount+st.PendingCount > 0 {
		st.State = lifecycle.StateStopping
	}
	return st, nil
}

// Status reads the service and, when it wants a task, its tasks and the
// public IP of the best running one (see serving: never a task being
// stopped; the current deployment's, healthy and newest first). See
// [lifecycle.State] for the exact rules.
func (s *Service) Status(ctx context.Context) (Status, error) { return s.status(ctx, true, s.now()) }

// Summary reads only the service: counts, ARN and tags, no tasks (State is
// sleeping, stopping or, with a desired count, starting). It is what the
// Kill Lambda, which may not list tasks, can know.
func (s *Service) Summary(ctx context.Context) (Status, error) {
	svc, err := s.describe(ctx)
	if err != nil {
		return Status{}, err
	}
	st := fromService(svc)
	if st.DesiredCount > 0 {
		st.State = lifecycle.StateStarting
	}
	return st, nil
}

func (s *Service) describe(ctx context.Context) (*ecstypes.Service, error) {
	out, err := s.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster:  aws.String(s.cfg.Cluster),
		Services: []string{s.cfg.Service},
		Include:  []ecstypes.ServiceField{ecstypes.ServiceFieldTags},
	})
	if err != nil {
		return nil, fmt.Errorf("describe service %s/%s: %w", s.cfg.Cluster, s.cfg.Service, notFound(err))
	}
	for i := range out.Services {
		if aws.ToString(out.Services[i].Status) == "ACTIVE" {
			return &out.Services[i], nil
		}
	}
	return nil, fmt.Errorf("%s/%s: %w", s.cfg.Cluster, s.cfg.Service, ErrServiceNotFound)
}

// fromService fills the counts, ARN and tags, and the sleeping/stopping state.
func fromService(svc *ecstypes.Service) Status {
	st := Status{DesiredCount: svc.DesiredCount, RunningCount: svc.RunningCount, PendingCount: svc.PendingCount,
		ServiceARN: aws.ToString(svc.ServiceArn)}
	for _, t := range svc.Tags {
		switch aws.ToString(t.Key) {
		case TagLastWake:
			st.LastWake = parseEpoch(aws.ToString(t.Value))
		case TagWokenAt:
			st.WokenAt = parseEpoch(aws.ToString(t.Value))
		case TagIdleSince:
			st.IdleSince = parseEpoch(aws.ToString(t.Value))
		}
	}
	if st.RunningCount+st.PendingCount > 0 {
		st.State = lifecycle.StateStopping
	} else {
		st.State = lifecycle.StateSleeping
	}
	return st
}

// status is Status. Without withIP it skips the EC2 lookup of the public IP,
// for the idle policy, which needs only the counts and Since: a task that ECS
// reports RUNNING then counts as lifecycle.StateRunning, with PublicIP empty.
// now bounds the failure window.
func (s *Service) status(ctx context.Context, withIP bool, now time.Time) (Status, error) {
	svc, err := s.describe(ctx)
	if err != nil {
		return Status{}, err
	}
	st := fromService(svc)
	if st.DesiredCount == 0 {
		// The scheduler has already told every task to stop, so the counts are
		// the whole story and listing tasks would only cost an API call.
		return st, nil
	}
	st.State = lifecycle.StateStarting
	name := aws.ToString(svc.ServiceName)
	tasks, err := s.tasks(ctx, name, ecstypes.DesiredStatusRunning)
	if err != nil {
		return Status{}, err
	}
	for _, t := range tasks {
		if ts := taskSince(t); !ts.IsZero() && (st.Since.IsZero() || ts.Before(st.Since)) {
			st.Since = ts
		}
		if aws.ToString(t.LastStatus) == "RUNNING" && t.StartedAt != nil && (st.RunningSince.IsZero() || t.StartedAt.Before(st.RunningSince)) {
			st.RunningSince = *t.StartedAt
		}
		if t.HealthStatus == ecstypes.HealthStatusHealthy {
			st.Healthy = true
		}
	}
	best := -1
	for _, t := range tasks {
		if r := taskRank(aws.ToString(t.LastStatus)); r > best {
			best = r
			st.TaskARN, st.TaskStatus = aws.ToString(t.TaskArn), aws.ToString(t.LastStatus)
		}
	}
	for _, t := range serving(tasks, primaryDeployment(svc)) {
		if !withIP {
			st.State = lifecycle.StateRunning
			st.TaskARN, st.TaskStatus = aws.ToString(t.TaskArn), aws.ToString(t.LastStatus)
			break
		}
		eni := taskENI(t)
		if eni == "" {
			continue
		}
		ip, err := s.publicIP(ctx, eni)
		if err != nil {
			return Status{}, err
		}
		if ip == "" {
			continue
		}
		st.State, st.PublicIP = lifecycle.StateRunning, ip
		st.TaskARN, st.TaskStatus = aws.ToString(t.TaskArn), aws.ToString(t.LastStatus)
		break
	}
	// Wake skips the failure count once it has an address to give; the idle
	// policy always counts (a crash loop has RUNNING moments).
	if withIP && st.State == lifecycle.StateRunning {
		return st, nil
	}
	if err := s.countFailures(ctx, name, now, &st); err != nil {
		return Status{}, err
	}
	if st.State != lifecycle.StateRunning && st.FailedStarts >= FailedStartsLimit {
		st.State = lifecycle.StateFailed
	}
	return st, nil
}

// countFailures fills the failure fields of st from the service's stopped
// tasks: those that [failedStop] calls failures, stopped after st.WokenAt
// and within the failure window before now. A stopped task without a stop
// time (real ECS always gives one) counts.
func (s *Service) countFailures(ctx context.Context, serviceName string, now time.Time, st *Status) error {
	stopped, err := s.tasks(ctx, serviceName, ecstypes.DesiredStatusStopped)
	if err != nil {
		return err
	}
	from := now.Add(-s.cfg.failureWindow())
	if st.WokenAt.After(from) {
		from = st.WokenAt
	}
	var newest time.Time
	for _, t := range stopped {
		if !failedStop(t) {
			continue
		}
		if t.StoppedAt != nil && t.StoppedAt.Before(from) {
			continue
		}
		st.FailedStarts++
		if ts := taskSince(t); !ts.IsZero() && (st.FailingSince.IsZero() || ts.Before(st.FailingSince)) {
			st.FailingSince = ts
		}
		at := aws.ToTime(t.StoppedAt)
		if st.FailureReason == "" || !at.Before(newest) { // ties (no stop times): the later listed
			newest, st.FailureReason = at, stopReason(t)
		}
	}
	return nil
}

// failedStop tells a task that failed to start or crashed from one that was
// stopped on purpose (scale-in by Sleep or Kill, a deployment, StopTask).
// ECS says so in stopCode; where it is missing (or ServiceSchedulerInitiated,
// which covers both scale-in and health-check replacement) the stoppedReason
// decides.
func failedStop(t ecstypes.Task) bool {
	switch t.StopCode {
	case ecstypes.TaskStopCodeTaskFailedToStart, ecstypes.TaskStopCodeEssentialContainerExited:
		return true
	case ecstypes.TaskStopCodeUserInitiated, ecstypes.TaskStopCodeSpotInterruption, ecstypes.TaskStopCodeTerminationNotice:
		return false
	}
	r := strings.ToLower(aws.ToString(t.StoppedReason))
	for _, failure := range []string{"essential container", "health check", "cannotpull", "cannotstart", "resourceinitializationerror", "outofmemory", "failed to start"} {
		if strings.Contains(r, failure) {
			return true
		}
	}
	return false
}

// stopReason is what Wake reports for a failed task: ECS's reason and the
// essential containers' exit codes or reasons, ARNs and account ids
// redacted, at most 300 bytes.
func stopReason(t ecstypes.Task) string {
	parts := []string{aws.ToString(t.StoppedReason)}
	if parts[0] == "" {
		parts[0] = string(t.StopCode)
	}
	for _, c := range t.Containers {
		switch {
		case aws.ToString(c.Reason) != "":
			parts = append(parts, fmt.Sprintf("container %s: %s", aws.ToString(c.Name), aws.ToString(c.Reason)))
		case c.ExitCode != nil && *c.ExitCode != 0:
			parts = append(parts, fmt.Sprintf("container %s: exit code %d", aws.ToString(c.Name), *c.ExitCode))
		}
	}
	r := strings.Join(parts, "; ")
	r = arnPattern.ReplaceAllString(r, "<arn>")
	r = accountPattern.ReplaceAllString(r, "<account>")
	if len(r) > 300 {
		r = r[:300] + "…"
	}
	return r
}

var (
	arnPattern     = regexp.MustCompile(`arn:aws[a-z-]*:[^\s"',;)]+`)
	accountPattern = regexp.MustCompile(`\b\d{12}\b`)
)

// tasks returns the tasks of the service with the given desired status
// (RUNNING: the live ones; STOPPED: those ECS still lists after they stopped).
func (s *Service) tasks(ctx context.Context, serviceName string, desired ecstypes.DesiredStatus) ([]ecstypes.Task, error) {
	if serviceName == "" {
		serviceName = s.cfg.Service[strings.LastIndex(s.cfg.Service, "/")+1:]
	}
	var arns []string
	p := ecs.NewListTasksPaginator(s.ecs, &ecs.ListTasksInput{
		Cluster:       aws.String(s.cfg.Cluster),
		ServiceName:   aws.String(serviceName),
		DesiredStatus: desired,
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list tasks of %s/%s: %w", s.cfg.Cluster, serviceName, err)
		}
		arns = append(arns, page.TaskArns...)
	}
	var tasks []ecstypes.Task
	// DescribeTasks takes at most 100 ARNs per call.
	for len(arns) > 0 {
		n := min(len(arns), 100)
		out, err := s.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(s.cfg.Cluster), Tasks: arns[:n]})
		if err != nil {
			return nil, fmt.Errorf("describe tasks of %s/%s: %w", s.cfg.Cluster, serviceName, err)
		}
		arns = arns[n:]
		for _, t := range out.Tasks {
			// A service's tasks carry the group "service:<name>". Checking it
			// keeps stray RunTask tasks in a shared cluster from being reported
			// as the server, whatever the ListTasks filter did.
			if aws.ToString(t.Group) != "service:"+serviceName {
				continue
			}
			if aws.ToString(t.DesiredStatus) != string(desired) {
				continue
			}
			tasks = append(tasks, t)
		}
	}
	return tasks, nil
}

func (s *Service) publicIP(ctx context.Context, eni string) (string, error) {
	ips, err := s.ec2.PublicIPs(ctx, []string{eni})
	if err != nil {
		return "", fmt.Errorf("describe network interface %s: %w", eni, err)
	}
	return ips[eni], nil
}

// taskENI returns the networkInterfaceId of an awsvpc task's ENI attachment.
func taskENI(t ecstypes.Task) string {
	for _, a := range t.Attachments {
		if aws.ToString(a.Type) != "ElasticNetworkInterface" {
			continue
		}
		for _, d := range a.Details {
			if aws.ToString(d.Name) == "networkInterfaceId" {
				return aws.ToString(d.Value)
			}
		}
	}
	return ""
}

func taskSince(t ecstypes.Task) time.Time {
	if t.StartedAt != nil {
		return *t.StartedAt
	}
	if t.CreatedAt != nil {
		return *t.CreatedAt
	}
	return time.Time{}
}

// serving returns the tasks an agent may be sent to, best first. Only a task
// ECS reports RUNNING and has not begun to stop qualifies: tasks() already
// leaves out those whose desired status is STOPPED, and a task being stopped
// (draining its streams after SIGTERM) also carries stoppingAt, in case a
// listing lags. Then, after a replacement or an upgrade, a task of the
// service's PRIMARY deployment (its startedBy is the deployment's id) comes
// before an older deployment's, which ECS is about to stop; then a healthy
// task before one not yet checked before an unhealthy one (ECS replaces
// those); then the newest. Without this, the first RUNNING task in ECS's
// listing order won, and an agent probing after a replacement could be sent
// to the draining task and retry it for its whole connect_retry_timeout.
func serving(tasks []ecstypes.Task, primary string) []ecstypes.Task {
	var ok []ecstypes.Task
	for _, t := range tasks {
		if aws.ToString(t.LastStatus) == "RUNNING" && aws.ToString(t.DesiredStatus) == string(ecstypes.DesiredStatusRunning) && t.StoppingAt == nil {
			ok = append(ok, t)
		}
	}
	current := func(t ecstypes.Task) bool { return primary != "" && aws.ToString(t.StartedBy) == primary }
	health := func(t ecstypes.Task) int {
		switch t.HealthStatus {
		case ecstypes.HealthStatusHealthy:
			return 2
		case ecstypes.HealthStatusUnhealthy:
			return 0
		}
		return 1
	}
	slices.SortStableFunc(ok, func(a, b ecstypes.Task) int {
		if ca, cb := current(a), current(b); ca != cb {
			if ca {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(health(b), health(a)); c != 0 {
			return c
		}
		return taskSince(b).Compare(taskSince(a))
	})
	return ok
}

// primaryDeployment is the id of the service's PRIMARY deployment (the one
// ECS is moving to), or "" when ECS did not say.
func primaryDeployment(svc *ecstypes.Service) string {
	for _, d := range svc.Deployments {
		if aws.ToString(d.Status) == "PRIMARY" {
			return aws.ToString(d.Id)
		}
	}
	return ""
}

// taskRank orders ECS lifecycle statuses so the status report shows the task
// closest to serving.
func taskRank(lastStatus string) int {
	switch lastStatus {
	case "PROVISIONING":
		return 1
	case "PENDING":
		return 2
	case "ACTIVATING":
		return 3
	case "RUNNING":
		return 4
	}
	return 0
}
