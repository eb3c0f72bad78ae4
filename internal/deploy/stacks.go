package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/fluidity-tunnel/fluidity/internal/retry"
)

// stackSpec is one stack as deploy wants it.
type stackSpec struct {
	name   string
	body   string
	params map[string]string
	// server marks the Fargate stack, whose DesiredCount follows the live service.
	server bool
}

func (d *Deployer) serverStack(image, secretARN string, net network) stackSpec {
	p := map[string]string{
		"Image":           image,
		"VpcId":           net.vpc,
		"SubnetIds":       strings.Join(net.subnets, ","),
		"TlsSecretArn":    secretARN,
		"ClusterName":     d.n.cluster,
		"ServiceName":     d.n.service,
		"CpuArchitecture": cpuArchitecture(d.cfg.Arch),
		"DesiredCount":    "0",
		"MetricsInterval": metricsInterval(d.cfg.MetricsInterval),
	}
	if d.cfg.AllowedCidr != "" {
		p["AllowedCidr"] = d.cfg.AllowedCidr
	}
	return stackSpec{name: d.n.serverStack, body: d.fargateTemplate, params: p, server: true}
}

// controlStack is wired to the server stack through its outputs (the names
// the Lambdas address). In a dry run of a first deploy there are no outputs
// yet; the names are those the server stack is given.
func (d *Deployer) controlStack(bucket string, keys, server map[string]string) stackSpec {
	cluster, service := server["ClusterName"], server["ServiceName"]
	if cluster == "" {
		cluster = d.n.cluster
	}
	if service == "" {
		service = d.n.service
	}
	p := map[string]string{
		"ClusterName":        cluster,
		"ServiceName":        service,
		"CodeBucket":         bucket,
		"WakeCodeKey":        keys["wake"],
		"SleepCodeKey":       keys["sleep"],
		"KillCodeKey":        keys["kill"],
		"LambdaArchitecture": lambdaArchitecture(d.cfg.Arch),
		"MetricsInterval":    metricsInterval(d.cfg.MetricsInterval),
	}
	return stackSpec{name: d.n.controlStack, body: d.controlTemplate, params: p}
}

// metricsInterval is the templates' form of the interval ("^[0-9]+(s|m)$"),
// always passed, so that a run without the flag puts both stacks back on the
// default together rather than leaving one on an older value.
func metricsInterval(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

func cfParams(p map[string]string) []cftypes.Parameter {
	var out []cftypes.Parameter
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, cftypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(p[k])})
	}
	return out
}

func outputs(st *cftypes.Stack) map[string]string {
	m := map[string]string{}
	if st != nil {
		for _, o := range st.Outputs {
			m[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
		}
	}
	return m
}

func stackParams(st *cftypes.Stack) map[string]string {
	m := map[string]string{}
	for _, p := range st.Parameters {
		m[aws.ToString(p.ParameterKey)] = aws.ToString(p.ParameterValue)
	}
	return m
}

// describeStack returns the stack, or nil when there is none by that name.
func (d *Deployer) describeStack(ctx context.Context, name string) (*cftypes.Stack, error) {
	out, err := d.cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	if apiErrorIs(err, "ValidationError", "does not exist") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stack %s: %w", name, err)
	}
	if len(out.Stacks) == 0 || out.Stacks[0].StackStatus == cftypes.StackStatusDeleteComplete {
		return nil, nil
	}
	return &out.Stacks[0], nil
}

func inProgress(s cftypes.StackStatus) bool {
	return strings.HasSuffix(string(s), "_IN_PROGRESS") && s != cftypes.StackStatusReviewInProgress
}

// applyStack creates the stack or updates it through a change set, and
// returns its outputs. A change set that changes nothing is deleted and the
// stack reported unchanged.
func (d *Deployer) applyStack(ctx context.Context, spec stackSpec) (map[string]string, error) {
	spec.params = maps.Clone(spec.params)
	st, err := d.describeStack(ctx, spec.name)
	if err != nil {
		return nil, err
	}
	if st != nil && inProgress(st.StackStatus) {
		d.say("stack %s: %s, waiting for it to settle", spec.name, st.StackStatus)
		if st, err = d.waitStack(ctx, spec.name, d.eventIDs(ctx, spec.name)); err != nil {
			return nil, err
		}
	}
	if st != nil {
		switch st.StackStatus {
		case cftypes.StackStatusReviewInProgress, cftypes.StackStatusRollbackComplete, cftypes.StackStatusRollbackFailed:
			// A change set never executed, or a first creation that failed:
			// no resources, and CloudFormation only lets such a stack be
			// deleted. Start again.
			if d.cfg.DryRun {
				d.say("stack %s: %s; would delete it and create it anew", spec.name, st.StackStatus)
			} else {
				d.say("stack %s: %s; deleting it to create it anew", spec.name, st.StackStatus)
				if err := d.deleteStack(ctx, spec.name); err != nil {
					return nil, err
				}
			}
			st = nil
		}
	}
	if st == nil {
		return d.createStack(ctx, spec)
	}
	return d.updateStack(ctx, spec, st)
}

// createStack creates a new stack directly: there is nothing to review in a
// creation, and a dry run shows it as a CREATE change set.
func (d *Deployer) createStack(ctx context.Context, spec stackSpec) (map[string]string, error) {
	if d.cfg.DryRun {
		return nil, d.previewCreate(ctx, spec)
	}
	d.say("stack %s: creating", spec.name)
	start := time.Now()
	if _, err := d.cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String(spec.name),
		TemplateBody: aws.String(spec.body),
		Parameters:   cfParams(spec.params),
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam},
	}); err != nil {
		return nil, fmt.Errorf("stack %s: create: %w", spec.name, err)
	}
	st, err := d.waitStack(ctx, spec.name, map[string]bool{})
	if err != nil {
		return nil, err
	}
	if st == nil || st.StackStatus != cftypes.StackStatusCreateComplete {
		return nil, d.stackFailed(ctx, spec.name, st)
	}
	d.say("stack %s: %s in %s", spec.name, st.StackStatus, time.Since(start).Round(time.Second))
	return outputs(st), nil
}

// previewCreate shows what creating the stack would add: a CREATE change set,
// described and deleted with the empty stack CloudFormation makes for it.
func (d *Deployer) previewCreate(ctx context.Context, spec stackSpec) error {
	cs, err := d.createChangeSet(ctx, spec, cftypes.ChangeSetTypeCreate)
	if err != nil {
		return err
	}
	d.say("stack %s: would create", spec.name)
	d.printParams(nil, spec.params)
	if cs != nil {
		d.printChanges(cs.Changes)
		d.deleteChangeSet(ctx, cs)
	}
	return d.deleteStack(ctx, spec.name)
}

func (d *Deployer) updateStack(ctx context.Context, spec stackSpec, st *cftypes.Stack) (map[string]string, error) {
	current := stackParams(st)
	if spec.server {
		// First ask with the count the stack has: when nothing else
		// changes, an awake server's live count alone is no reason for an
		// update.
		if c, ok := current["DesiredCount"]; ok {
			spec.params["DesiredCount"] = c
		}
	}
	cs, err := d.createChangeSet(ctx, spec, cftypes.ChangeSetTypeUpdate)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		d.say("stack %s: unchanged", spec.name)
		return outputs(st), nil
	}
	var svc serviceState
	if spec.server {
		svc = d.serviceState(ctx, outputs(st))
		live := min(svc.desired, 1) // the template allows 0 or 1: one task, one address
		if svc.desired > 1 {
			d.say("  the service runs %d tasks, more than the one the template allows; the update sets it to 1", svc.desired)
		}
		if svc.known && strconv.Itoa(live) != spec.params["DesiredCount"] {
			// CloudFormation applies DesiredCount whenever it updates the
			// service: give it the live count.
			d.deleteChangeSet(ctx, cs)
			spec.params["DesiredCount"] = strconv.Itoa(live)
			if cs, err = d.createChangeSet(ctx, spec, cftypes.ChangeSetTypeUpdate); err != nil {
				return nil, err
			}
			if cs == nil {
				d.say("stack %s: unchanged", spec.name)
				return outputs(st), nil
			}
		}
	}
	d.say("stack %s: %s", spec.name, d.would("updating", "update"))
	d.printParams(current, spec.params)
	d.printChanges(cs.Changes)
	if spec.server {
		d.serviceNote(svc, current, spec.params, cs.Changes)
	}
	if d.cfg.DryRun {
		d.deleteChangeSet(ctx, cs)
		return outputs(st), nil
	}
	seen := d.eventIDs(ctx, spec.name)
	start := time.Now()
	if _, err := d.cf.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: cs.ChangeSetId, StackName: aws.String(spec.name)}); err != nil {
		return nil, fmt.Errorf("stack %s: execute change set: %w", spec.name, err)
	}
	st, err = d.waitStack(ctx, spec.name, seen)
	if err != nil {
		return nil, err
	}
	if st == nil || st.StackStatus != cftypes.StackStatusUpdateComplete {
		return nil, d.stackFailed(ctx, spec.name, st)
	}
	d.say("stack %s: %s in %s", spec.name, st.StackStatus, time.Since(start).Round(time.Second))
	return outputs(st), nil
}

// serviceState is the live ECS service, as the Wake and Sleep Lambdas left it.
type serviceState struct {
	known            bool
	desired, running int
}

func (d *Deployer) serviceState(ctx context.Context, out map[string]string) serviceState {
	cluster, service := out["ClusterName"], out["ServiceName"]
	if cluster == "" || service == "" {
		return serviceState{}
	}
	res, err := d.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{service}})
	if err != nil || len(res.Services) != 1 {
		d.say("warning: cannot read service %s/%s (%v); the update keeps the desired count the stack has", cluster, service, err)
		return serviceState{}
	}
	s := res.Services[0]
	return serviceState{known: true, desired: int(s.DesiredCount), running: int(s.RunningCount)}
}

// serviceNote says what the update does to the server: asleep it stays
// asleep; awake, a new task definition replaces the running task.
func (d *Deployer) serviceNote(svc serviceState, current, next map[string]string, changes []cftypes.Change) {
	if !svc.known {
		return
	}
	replaces := current["Image"] != next["Image"]
	for _, c := range changes {
		if rc := c.ResourceChange; rc != nil && aws.ToString(rc.LogicalResourceId) == "TaskDefinition" {
			replaces = true
		}
	}
	switch {
	case svc.desired == 0:
		d.say("  the server is asleep and stays asleep (DesiredCount 0); the next Wake starts the new version")
	case replaces:
		verb := "replaces"
		if d.cfg.DryRun {
			verb = "would replace"
		}
		d.say("  WARNING: the server is awake (desired %d, running %d) and this update %s its task: ECS stops the running task and starts one with the new definition.",
			svc.desired, svc.running, verb)
		d.say("  Connections through it drop; agents reconnect to the new task (Wake reports its address) within about a minute.")
	default:
		d.say("  the server is awake (desired %d) and stays awake; its task is not replaced", svc.desired)
	}
}

func (d *Deployer) printParams(current, next map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(next)) {
		old, had := current[k]
		switch {
		case current == nil:
			d.say("  parameter %s = %s", k, next[k])
		case !had:
			d.say("  parameter %s: (default) -> %s", k, next[k])
		case !sameParam(old, next[k]):
			d.say("  parameter %s: %s -> %s", k, old, next[k])
		}
	}
}

// sameParam compares a stack's parameter value with one deploy passes. A
// list parameter (SubnetIds) is "a,b" in CloudFormation's answers; moto
// answers it in Python's list notation, "['a', 'b']".
func sameParam(have, want string) bool {
	if have == want {
		return true
	}
	if !strings.HasPrefix(have, "[") || !strings.HasSuffix(have, "]") {
		return false
	}
	items := strings.Split(strings.Trim(have, "[]"), ",")
	for i, it := range items {
		items[i] = strings.Trim(strings.TrimSpace(it), "'")
	}
	return strings.Join(items, ",") == want
}

func (d *Deployer) printChanges(changes []cftypes.Change) {
	for _, c := range changes {
		rc := c.ResourceChange
		if rc == nil {
			continue
		}
		line := fmt.Sprintf("  %-6s %-32s %s", rc.Action, aws.ToString(rc.LogicalResourceId), aws.ToString(rc.ResourceType))
		if rc.Replacement != "" && rc.Replacement != cftypes.ReplacementFalse {
			line += " (replacement: " + string(rc.Replacement) + ")"
		}
		d.say("%s", line)
	}
}

// createChangeSet creates a change set and waits until CloudFormation has
// worked it out. It returns nil when the change set changes nothing (and is
// then deleted): CloudFormation answers that either as a FAILED change set
// ("didn't contain changes") or, in some implementations, at once with
// "No updates are to be performed".
func (d *Deployer) createChangeSet(ctx context.Context, spec stackSpec, typ cftypes.ChangeSetType) (*cloudformation.DescribeChangeSetOutput, error) {
	name := fmt.Sprintf("fluidity-deploy-%d", time.Now().UnixNano())
	created, err := d.cf.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{
		StackName:     aws.String(spec.name),
		ChangeSetName: aws.String(name),
		ChangeSetType: typ,
		TemplateBody:  aws.String(spec.body),
		Parameters:    cfParams(spec.params),
		Capabilities:  []cftypes.Capability{cftypes.CapabilityCapabilityIam},
		Description:   aws.String("fluidity deploy"),
	})
	if noChanges(err, "") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stack %s: create change set: %w", spec.name, err)
	}
	for {
		cs, err := d.cf.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: created.Id, StackName: aws.String(spec.name)})
		if err != nil {
			return nil, fmt.Errorf("stack %s: describe change set: %w", spec.name, err)
		}
		switch cs.Status {
		case cftypes.ChangeSetStatusCreateComplete:
			for next := cs.NextToken; next != nil; {
				page, err := d.cf.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: created.Id, StackName: aws.String(spec.name), NextToken: next})
				if err != nil {
					return nil, fmt.Errorf("stack %s: describe change set: %w", spec.name, err)
				}
				cs.Changes = append(cs.Changes, page.Changes...)
				next = page.NextToken
			}
			return cs, nil
		case cftypes.ChangeSetStatusFailed:
			d.deleteChangeSet(ctx, cs)
			if noChanges(nil, aws.ToString(cs.StatusReason)) {
				return nil, nil
			}
			return nil, fmt.Errorf("stack %s: change set failed: %s", spec.name, aws.ToString(cs.StatusReason))
		}
		if err := retry.Sleep(ctx, d.cfg.PollInterval); err != nil {
			return nil, err
		}
	}
}

func noChanges(err error, reason string) bool {
	if err != nil {
		return apiErrorIs(err, "ValidationError", "No updates are to be performed")
	}
	return strings.Contains(reason, "didn't contain changes") || strings.Contains(reason, "No updates are to be performed")
}

func (d *Deployer) deleteChangeSet(ctx context.Context, cs *cloudformation.DescribeChangeSetOutput) {
	if _, err := d.cf.DeleteChangeSet(ctx, &cloudformation.DeleteChangeSetInput{ChangeSetName: cs.ChangeSetId, StackName: cs.StackId}); err != nil {
		d.say("warning: change set %s left behind: %v", aws.ToString(cs.ChangeSetName), err)
	}
}

// deleteStack deletes the stack and waits until it is gone.
func (d *Deployer) deleteStack(ctx context.Context, name string) error {
	seen := d.eventIDs(ctx, name)
	if _, err := d.cf.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(name)}); err != nil {
		return fmt.Errorf("stack %s: delete: %w", name, err)
	}
	st, err := d.waitStack(ctx, name, seen)
	if err != nil {
		return err
	}
	if st != nil {
		return d.stackFailed(ctx, name, st)
	}
	return nil
}

// eventIDs are the events a stack has so far, so waitStack prints only new ones.
func (d *Deployer) eventIDs(ctx context.Context, name string) map[string]bool {
	seen := map[string]bool{}
	out, err := d.cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
	if err == nil {
		for _, e := range out.StackEvents {
			seen[aws.ToString(e.EventId)] = true
		}
	}
	return seen
}

// waitStack polls until the stack is no longer in progress, printing its new
// events as they come, and returns it (nil once it is deleted).
func (d *Deployer) waitStack(ctx context.Context, name string, seen map[string]bool) (*cftypes.Stack, error) {
	var stackID string
	for {
		st, err := d.describeStack(ctx, name)
		if err != nil {
			return nil, err
		}
		if st != nil {
			stackID = aws.ToString(st.StackId)
		}
		// A deleted stack is found by its ID only, with its last events.
		if stackID != "" {
			d.printEvents(ctx, stackID, seen)
		}
		if st == nil || !inProgress(st.StackStatus) {
			return st, nil
		}
		if err := retry.Sleep(ctx, d.cfg.PollInterval); err != nil {
			return nil, fmt.Errorf("stack %s: still %s: %w", name, st.StackStatus, err)
		}
	}
}

func (d *Deployer) printEvents(ctx context.Context, stack string, seen map[string]bool) {
	out, err := d.cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(stack)})
	if err != nil {
		return
	}
	// Newest first from the API; print oldest first.
	for _, e := range slices.Backward(out.StackEvents) {
		id := aws.ToString(e.EventId)
		if seen[id] {
			continue
		}
		seen[id] = true
		line := fmt.Sprintf("  %s %-28s %-32s %s", aws.ToTime(e.Timestamp).UTC().Format("15:04:05"),
			aws.ToString(e.ResourceType), aws.ToString(e.LogicalResourceId), e.ResourceStatus)
		if r := aws.ToString(e.ResourceStatusReason); r != "" {
			line += ": " + r
		}
		d.say("%s", line)
	}
}

// stackFailed builds the error for a stack that did not reach its goal, with
// the reasons CloudFormation gave for the resources that failed.
func (d *Deployer) stackFailed(ctx context.Context, name string, st *cftypes.Stack) error {
	if st == nil {
		return fmt.Errorf("stack %s: gone", name)
	}
	var reasons []string
	if out, err := d.cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: st.StackId}); err == nil {
		for _, e := range out.StackEvents {
			if strings.HasSuffix(string(e.ResourceStatus), "_FAILED") && aws.ToString(e.ResourceStatusReason) != "" {
				reasons = append(reasons, aws.ToString(e.LogicalResourceId)+": "+aws.ToString(e.ResourceStatusReason))
			}
		}
	}
	msg := fmt.Sprintf("stack %s: %s", name, st.StackStatus)
	if r := aws.ToString(st.StackStatusReason); r != "" {
		msg += " (" + r + ")"
	}
	if len(reasons) > 0 {
		msg += "; " + strings.Join(reasons, "; ")
	}
	return fmt.Errorf("%s", msg)
}
