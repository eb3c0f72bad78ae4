package fargate

import (
	"context"
	"fmt"
	"time"
)

// IdlePolicy decides when the server may be put to sleep.
//
// The server is idle when it has no active connections and its last activity
// is older than Threshold. Only datapoints younger than Threshold count
// ("fresh"); the policy reads exactly that window.
//
// Missing data is decided deliberately, by how long the task has been up
// ([Status.Since]):
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
//   - uptime unknown (no task has started yet, or ECS gave no timestamps):
//     NOT idle. Nothing bills before a task starts, and the nightly Kill is the
//     backstop for a service stuck there.
//
// A service whose desired count is already 0 is never "idle": there is
// nothing to do.
type IdlePolicy struct {
	// Threshold is how long the server must have been without activity.
	Threshold time.Duration
}

// DefaultIdlePolicy returns the 15 minute threshold of the spec.
func DefaultIdlePolicy() IdlePolicy { return IdlePolicy{Threshold: 15 * time.Minute} }

// Validate rejects thresholds the metrics cannot resolve.
func (p IdlePolicy) Validate() error {
	if p.Threshold < time.Second {
		return fmt.Errorf("fargate: idle threshold %v is shorter than one second", p.Threshold)
	}
	return nil
}

// Decision is the outcome of the policy with the evidence it used, for logs.
type Decision struct {
	Idle   bool
	Reason string
	Status Status
	Data   Snapshot
}

// Decide applies the policy to a service status and the newest metrics.
// It is pure so every branch can be tested without AWS.
func (p IdlePolicy) Decide(now time.Time, st Status, m Snapshot) Decision {
	d := Decision{Status: st, Data: m}
	if st.DesiredCount == 0 {
		d.Reason = fmt.Sprintf("already %s (desired count 0)", st.State)
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
	if st.Since.IsZero() {
		d.Reason = "no metrics and no started task yet"
		return d
	}
	up := now.Sub(st.Since)
	if up < p.Threshold {
		d.Reason = fmt.Sprintf("no metrics yet; task up for %s, under the %s threshold", round(up), p.Threshold)
		return d
	}
	d.Idle = true
	d.Reason = fmt.Sprintf("no metrics in the last %s although the task has been up for %s", p.Threshold, round(up))
	return d
}

// Apply reads the service and its metrics, decides, and sets the desired
// count to 0 when idle. The returned Decision says what happened.
func (p IdlePolicy) Apply(ctx context.Context, svc *Service, metrics *MetricsReader, now time.Time) (Decision, error) {
	if err := p.Validate(); err != nil {
		return Decision{}, err
	}
	st, err := svc.status(ctx, false)
	if err != nil {
		return Decision{}, err
	}
	var snap Snapshot
	if st.DesiredCount > 0 {
		if snap, err = metrics.Read(ctx, now, p.Threshold); err != nil {
			return Decision{Status: st}, err
		}
	}
	d := p.Decide(now, st, snap)
	if d.Idle {
		if err := svc.SetDesiredCount(ctx, 0); err != nil {
			return d, err
		}
	}
	return d, nil
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
