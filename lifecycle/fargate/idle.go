package fargate

import (
	"context"
	"fmt"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

// IdlePolicy decides when the server may be put to sleep.
//
// The server is idle when it has no active connections and its last activity
// is older than Threshold. Only datapoints younger than Threshold count
// ("fresh"); the policy reads exactly that window.
//
// Metrics lag: a datapoint is up to one metrics interval old when published
// and CloudWatch may take a while to return it, so a server that was just
// woken, or just got its first request in a long while, can still look idle.
// Two rules keep that from putting it to sleep:
//
//   - grace after a Wake: within WakeGrace of the newest Wake call
//     ([TagLastWake], written by Wake even on a running server) it is NOT
//     idle, whatever the metrics say;
//   - two consecutive checks: the first check that finds it idle only
//     records the observation ([TagIdleSince]); a later check, at least
//     ConfirmAfter after it, that still finds it idle scales it to 0. Any
//     check or Wake in between that finds it busy clears the record. (The
//     server also publishes at once when it goes from idle to active, so the
//     second check sees fresh activity.)
//
// Missing data is decided deliberately, by how long the task has been up
// ([Status.Since], or the Wake that raised the count, [Status.WokenAt],
// when no task has started):
//
//   - up for less than Threshold and no fresh datapoint yet: NOT idle. A
//     freshly woken server has not published yet (or its first publications
//     are still being ingested), and sleeping it now would undo the user's Wake.
//   - up for Threshold or longer and still no fresh datapoint: IDLE. A server
//     that cannot publish (broken role, crashed publisher, emit_metrics off)
//     is invisible to the policy; keeping it up would bill forever on the
//     hope that someone uses it, and an agent that does use it calls Wake again.
//     Deployments that turn metrics off therefore get the nightly Kill plus
//     this rule, which the README states.
//   - uptime unknown (no task has started yet and no recorded Wake): NOT
//     idle. Nothing bills before a task starts, and the nightly Kill is the
//     backstop for a service stuck there.
//
// Failures: a service that crash-loops (at least two failed task starts or
// crashes counted by [Service], no task HEALTHY, none RUNNING for
// CrashBound, and failing for CrashBound or longer) is IDLE whatever the
// grace period says: each new task would otherwise reset the uptime and keep
// a broken server billing forever.
//
// A service whose desired count is already 0 is never "idle": there is
// nothing to do.
type IdlePolicy struct {
	// Threshold is how long the server must have been without activity.
	Threshold time.Duration
	// WakeGrace is how long after a Wake the server is not idle; zero means
	// [DefaultWakeGrace].
	WakeGrace time.Duration
	// ConfirmAfter is the least time between the first idle observation and
	// the check that acts on it (so a duplicate or manual invocation seconds
	// later does not count as the second check); zero means
	// [DefaultConfirmAfter].
	ConfirmAfter time.Duration
	// CrashBound is how long a service may fail without a healthy task before
	// it is scaled to 0; zero means [DefaultCrashBound].
	CrashBound time.Duration
}

// Defaults of [IdlePolicy].
const (
	DefaultIdleThreshold = 15 * time.Minute
	DefaultWakeGrace     = 10 * time.Minute
	DefaultConfirmAfter  = time.Minute
	DefaultCrashBound    = 10 * time.Minute
)

// DefaultIdlePolicy returns the 15 minute threshold of the spec, a 10
// minute grace after a Wake, confirmation after at least a minute and a 10
// minute bound on crash loops.
func DefaultIdlePolicy() IdlePolicy {
	return IdlePolicy{Threshold: DefaultIdleThreshold, WakeGrace: DefaultWakeGrace, ConfirmAfter: DefaultConfirmAfter, CrashBound: DefaultCrashBound}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Validate rejects thresholds the metrics cannot resolve and negative durations.
func (p IdlePolicy) Validate() error {
	if p.Threshold < time.Second {
		return fmt.Errorf("fargate: idle threshold %v is shorter than one second", p.Threshold)
	}
	if p.WakeGrace < 0 || p.ConfirmAfter < 0 || p.CrashBound < 0 {
		return fmt.Errorf("fargate: negative wake grace %v, confirm-after %v or crash bound %v", p.WakeGrace, p.ConfirmAfter, p.CrashBound)
	}
	return nil
}

// Decision is the outcome of the policy with the evidence it used, for logs.
type Decision struct {
	// Idle: the idle condition holds on this check.
	Idle bool
	// ScaleToZero: it held on the previous check too (or the service
	// crash-loops), so the service is put to sleep now. Apply has done it
	// when it returns the Decision without an error.
	ScaleToZero bool
	Reason      string
	Status      Status
	Data        usage.Snapshot
}

// Decide applies the policy to a service status and the newest metrics.
// It is pure so every branch can be tested without AWS.
func (p IdlePolicy) Decide(now time.Time, st Status, m usage.Snapshot) Decision {
	d := p.decide(now, st, m)
	if !d.Idle || d.ScaleToZero {
		return d
	}
	confirm := orDefault(p.ConfirmAfter, DefaultConfirmAfter)
	switch {
	case st.IdleSince.IsZero():
		d.Reason += "; first idle check, confirming on the next"
	case now.Sub(st.IdleSince) < confirm:
		d.Reason += fmt.Sprintf("; first found idle %s ago, under the %s before a check may confirm it", round(now.Sub(st.IdleSince)), confirm)
	default:
		d.ScaleToZero = true
		d.Reason += fmt.Sprintf("; idle on the previous check too (%s ago)", round(now.Sub(st.IdleSince)))
	}
	return d
}

func (p IdlePolicy) decide(now time.Time, st Status, m usage.Snapshot) Decision {
	d := Decision{Status: st, Data: m}
	if st.DesiredCount == 0 {
		d.Reason = fmt.Sprintf("already %s (desired count 0)", st.State)
		return d
	}
	if reason, ok := p.crashLooping(now, st); ok {
		d.Idle, d.ScaleToZero, d.Reason = true, true, reason
		return d
	}
	if grace := orDefault(p.WakeGrace, DefaultWakeGrace); !st.LastWake.IsZero() && now.Sub(st.LastWake) < grace {
		d.Reason = fmt.Sprintf("woken %s ago, within the %s grace after a Wake", round(now.Sub(st.LastWake)), grace)
		return d
	}
	fresh := func(at time.Time) bool { return !at.IsZero() && now.Sub(at) < p.Threshold }
	if fresh(m.ActiveAt) && m.ActiveConnections > 0 {
		d.Reason = fmt.Sprintf("%.0f active connections", m.ActiveConnections)
		return d
	}
	if fresh(m.LastActivityAt) {
		ago := now.Sub(m.LastActivity)
		if ago < p.Threshold {
			d.Reason = fmt.Sprintf("last activity %s ago, under the %s threshold", round(ago), p.Threshold)
			return d
		}
		d.Idle = true
		d.Reason = fmt.Sprintf("no active connections and last activity %s ago, over the %s threshold", round(ago), p.Threshold)
		return d
	}
	// No fresh datapoint: decide on uptime, as documented on IdlePolicy.
	since, what := st.Since, "task up"
	if since.IsZero() {
		since, what = st.WokenAt, "woken"
	}
	if since.IsZero() {
		d.Reason = "no metrics and no started task yet"
		return d
	}
	up := now.Sub(since)
	if up < p.Threshold {
		d.Reason = fmt.Sprintf("no metrics yet; %s %s ago, under the %s threshold", what, round(up), p.Threshold)
		return d
	}
	d.Idle = true
	d.Reason = fmt.Sprintf("no metrics in the last %s although %s %s ago", p.Threshold, what, round(up))
	return d
}

// crashLooping applies the failure rule of IdlePolicy.
func (p IdlePolicy) crashLooping(now time.Time, st Status) (string, bool) {
	bound := orDefault(p.CrashBound, DefaultCrashBound)
	if st.FailedStarts < FailedStartsLimit || st.Healthy {
		return "", false
	}
	if !st.RunningSince.IsZero() && now.Sub(st.RunningSince) >= bound {
		return "", false // a task has stayed up: the failures are behind it
	}
	since := st.FailingSince
	if since.IsZero() {
		since = st.WokenAt
	}
	if since.IsZero() || now.Sub(since) < bound {
		return "", false
	}
	return fmt.Sprintf("crash loop: %d failed task starts, no healthy task for %s (over the %s bound); last: %s",
		st.FailedStarts, round(now.Sub(since)), bound, st.FailureReason), true
}

// Apply reads the service and its metrics, decides, keeps the record of
// idle checks in the service's tags, and sets the desired count to 0 when
// the Decision says so. The returned Decision says what happened.
func (p IdlePolicy) Apply(ctx context.Context, svc *Service, metrics *usage.MetricsReader, now time.Time) (Decision, error) {
	if err := p.Validate(); err != nil {
		return Decision{}, err
	}
	st, err := svc.status(ctx, false, now)
	if err != nil {
		return Decision{}, err
	}
	var snap usage.Snapshot
	if st.DesiredCount > 0 {
		if snap, err = metrics.Read(ctx, now, p.Threshold); err != nil {
			return Decision{Status: st}, err
		}
	}
	d := p.Decide(now, st, snap)
	switch {
	case d.ScaleToZero:
		if err := svc.SetDesiredCount(ctx, 0); err != nil {
			return d, err
		}
		if !st.IdleSince.IsZero() {
			svc.tag(ctx, st.ServiceARN, map[string]string{TagIdleSince: ""})
		}
	case d.Idle && st.IdleSince.IsZero():
		if err := svc.SetTags(ctx, st.ServiceARN, map[string]string{TagIdleSince: epoch(now)}); err != nil {
			return d, fmt.Errorf("record the first idle check: %w", err)
		}
	case !d.Idle && !st.IdleSince.IsZero() && st.DesiredCount > 0:
		if err := svc.SetTags(ctx, st.ServiceARN, map[string]string{TagIdleSince: ""}); err != nil {
			return d, fmt.Errorf("clear the idle record: %w", err)
		}
	}
	return d, nil
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
