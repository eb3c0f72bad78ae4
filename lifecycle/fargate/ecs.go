package fargate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
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
}

// EC2API is the part of the EC2 client that [Service] uses; *ec2.Client implements it.
type EC2API interface {
	DescribeNetworkInterfaces(ctx context.Context, in *ec2.DescribeNetworkInterfacesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeNetworkInterfacesOutput, error)
}

// ServiceConfig names the ECS service that runs the Fluidity server.
type ServiceConfig struct {
	// Cluster is the ECS cluster name or ARN.
	Cluster string
	// Service is the ECS service name or ARN.
	Service string
}

// DefaultServiceConfig returns the names used by infra/fargate.yaml's defaults.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{Cluster: "fluidity", Service: "fluidity-server"}
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
}

// ResultFromStatus turns a [Status] into the Wake/Kill API's answer; port is
// the tunnel port the server listens on.
func ResultFromStatus(st Status, port int) lifecycle.WakeResult {
	r := lifecycle.WakeResult{State: st.State, DesiredCount: st.DesiredCount, RunningCount: st.RunningCount, PendingCount: st.PendingCount}
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
}

// NewService returns a Service over the given clients.
func NewService(cfg ServiceConfig, ecsAPI ECSAPI, ec2API EC2API, log zerolog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ecsAPI == nil || ec2API == nil {
		return nil, errors.New("fargate: nil ecs or ec2 client")
	}
	return &Service{cfg: cfg, ecs: ecsAPI, ec2: ec2API, log: log}, nil
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

// Wake makes sure the service wants one task and returns the resulting status.
// It only writes when the desired count is 0, so repeated calls while the task
// starts (the agent polls) cost one read each.
func (s *Service) Wake(ctx context.Context) (Status, error) {
	st, err := s.Status(ctx)
	if err != nil {
		return Status{}, err
	}
	if st.DesiredCount >= 1 {
		return st, nil
	}
	if err := s.SetDesiredCount(ctx, 1); err != nil {
		return Status{}, err
	}
	// Report what was just asked for rather than re-reading: ECS counts lag
	// the update by seconds and the next poll will see the real progress.
	st.DesiredCount = 1
	st.State = lifecycle.StateStarting
	st.PublicIP = ""
	return st, nil
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
// public IP of the first running one. See [lifecycle.State] for the exact rules.
func (s *Service) Status(ctx context.Context) (Status, error) { return s.status(ctx, true) }

// status is Status. Without withIP it skips the EC2 lookup of the public IP,
// for the idle policy, which needs only the counts and Since: a task that ECS
// reports RUNNING then counts as lifecycle.StateRunning, with PublicIP empty.
func (s *Service) status(ctx context.Context, withIP bool) (Status, error) {
	out, err := s.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster:  aws.String(s.cfg.Cluster),
		Services: []string{s.cfg.Service},
	})
	if err != nil {
		return Status{}, fmt.Errorf("describe service %s/%s: %w", s.cfg.Cluster, s.cfg.Service, notFound(err))
	}
	var svc *ecstypes.Service
	for i := range out.Services {
		if aws.ToString(out.Services[i].Status) == "ACTIVE" {
			svc = &out.Services[i]
			break
		}
	}
	if svc == nil {
		return Status{}, fmt.Errorf("%s/%s: %w", s.cfg.Cluster, s.cfg.Service, ErrServiceNotFound)
	}
	st := Status{DesiredCount: svc.DesiredCount, RunningCount: svc.RunningCount, PendingCount: svc.PendingCount}
	if st.DesiredCount == 0 {
		// The scheduler has already told every task to stop, so the counts are
		// the whole story and listing tasks would only cost an API call.
		if st.RunningCount+st.PendingCount > 0 {
			st.State = lifecycle.StateStopping
		} else {
			st.State = lifecycle.StateSleeping
		}
		return st, nil
	}
	st.State = lifecycle.StateStarting
	tasks, err := s.liveTasks(ctx, aws.ToString(svc.ServiceName))
	if err != nil {
		return Status{}, err
	}
	for _, t := range tasks {
		if ts := taskSince(t); !ts.IsZero() && (st.Since.IsZero() || ts.Before(st.Since)) {
			st.Since = ts
		}
	}
	best := -1
	for _, t := range tasks {
		if r := taskRank(aws.ToString(t.LastStatus)); r > best {
			best = r
			st.TaskARN, st.TaskStatus = aws.ToString(t.TaskArn), aws.ToString(t.LastStatus)
		}
		if aws.ToString(t.LastStatus) != "RUNNING" {
			continue
		}
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
	return st, nil
}

// liveTasks returns the tasks of the service that ECS wants running.
func (s *Service) liveTasks(ctx context.Context, serviceName string) ([]ecstypes.Task, error) {
	if serviceName == "" {
		serviceName = s.cfg.Service[strings.LastIndex(s.cfg.Service, "/")+1:]
	}
	var arns []string
	p := ecs.NewListTasksPaginator(s.ecs, &ecs.ListTasksInput{
		Cluster:       aws.String(s.cfg.Cluster),
		ServiceName:   aws.String(serviceName),
		DesiredStatus: ecstypes.DesiredStatusRunning,
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
			if aws.ToString(t.DesiredStatus) != "RUNNING" {
				continue
			}
			tasks = append(tasks, t)
		}
	}
	return tasks, nil
}

func (s *Service) publicIP(ctx context.Context, eni string) (string, error) {
	out, err := s.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{eni}})
	if err != nil {
		return "", fmt.Errorf("describe network interface %s: %w", eni, err)
	}
	for _, ni := range out.NetworkInterfaces {
		if ni.Association != nil && aws.ToString(ni.Association.PublicIp) != "" {
			return aws.ToString(ni.Association.PublicIp), nil
		}
	}
	return "", nil
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
