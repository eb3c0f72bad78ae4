package fargate

import (
	"fmt"
	"time"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

// ExitPolicy decides an agent's Kill on exit: whether the server may stop
// without cutting off another agent. It rests on what the server saw, not
// on what the exiting agent saw: the server publishes [usage.MetricSessions],
// every agent session up at any moment of each metrics interval, and the
// exiting agent reports its own ([lifecycle.AgentUse]), which is subtracted.
//
// Why sessions counted by the server minus the caller's, rather than an
// agent id presented to the server and listed in the metric: an id would
// need a new field in the tunnel's handshake and a metric per agent (billed
// per metric) or a list CloudWatch cannot hold, while both ends already see
// sessions. Client certificates cannot tell agents apart either: several
// agents of one user may share one. The count is exact when the caller's
// sessions stayed the same over the span the window's datapoints cover
// ([lifecycle.SteadyNeeded]): each such datapoint then holds exactly its
// Sessions of the caller's, so anything above is someone else's.
//
// The Kill is refused (the Sleep policy then puts the server down once it is
// idle, at most one idle threshold later) when
//
//   - a Wake was recorded within WakeGrace: someone may be starting to use
//     the server, and an agent that has just connected is in no datapoint
//     yet (the exiting agent's own Wake counts too);
//   - the caller did not report its own use (an agent older than this
//     policy): its sessions cannot be told from another's;
//   - no Sessions datapoint lies in the [lifecycle.KillWindow]: a server that
//     does not publish, or publishes less often than MetricsInterval says,
//     is not evidence that nobody is connected (the safe choice);
//   - more than one task runs (a deployment replacing the task): the tasks'
//     datapoints share the metric, and a period's Maximum is one task's
//     count, not their sum;
//   - a datapoint of the window counts more sessions than the caller's: another
//     agent had a session within the window;
//   - the caller's sessions changed within SteadyNeeded: its share of the
//     older datapoints is unknown, so "no more than mine" proves nothing.
//
// What it cannot see: an agent that connected within about the last metrics
// interval (plus CloudWatch's ingestion) may be in no datapoint yet, or only
// in one published after the caller closed its sessions (where the caller's
// share is 0, so "no more than mine" hides it). Only the Wake grace covers
// it, which it does for an agent that has just started or woken the server.
type ExitPolicy struct {
	// WakeGrace: zero means [DefaultWakeGrace].
	WakeGrace time.Duration
	// MetricsInterval is the server's metrics_interval; zero means the
	// publisher's default (60 s).
	MetricsInterval time.Duration
	// Period is the statistics period of the metrics read; zero means
	// [usage.DefaultMetricsConfig]'s (one minute).
	Period time.Duration
}

// ExitDecision is the outcome of [ExitPolicy.Decide].
type ExitDecision struct {
	// Stop: nobody else is using the server; set the desired count to 0.
	Stop bool
	// Reason says why, for the log and, when refused, the agent.
	Reason string
}

// Window is how far back the Sessions datapoints are read.
func (p ExitPolicy) Window() time.Duration {
	return lifecycle.KillWindow(p.interval(), p.period())
}

func (p ExitPolicy) interval() time.Duration {
	return orDefault(p.MetricsInterval, usage.DefaultPublisherConfig().Interval)
}

func (p ExitPolicy) period() time.Duration {
	return orDefault(p.Period, usage.DefaultMetricsConfig().Period)
}

// Decide applies the policy at now to a running service st (desired count
// above 0), the caller's own use (nil when not reported) and the Sessions
// datapoints of [ExitPolicy.Window]. It is pure so every branch is tested
// without AWS.
func (p ExitPolicy) Decide(now time.Time, st Status, own *lifecycle.AgentUse, m usage.SessionsSnapshot) ExitDecision {
	refuse := func(format string, args ...any) ExitDecision {
		return ExitDecision{Reason: fmt.Sprintf(format, args...)}
	}
	if grace := orDefault(p.WakeGrace, DefaultWakeGrace); !st.LastWake.IsZero() && now.Sub(st.LastWake) < grace {
		return refuse("a Wake %s ago, within the %s grace: another agent may be starting to use the server", round(now.Sub(st.LastWake)), grace)
	}
	if own == nil {
		return refuse("the agent did not report its own sessions (an older agent): they cannot be told from another agent's")
	}
	if n := st.RunningCount + st.PendingCount; n > 1 {
		return refuse("%d tasks running or starting: their session counts are not added up", n)
	}
	window := p.Window()
	if m.Datapoints == 0 {
		return refuse("no Sessions datapoint from the server in the last %s: who is connected is unknown", window)
	}
	if m.Max > float64(own.Sessions) {
		return refuse("%.0f agent sessions on the server within the last %s, %d of them yours: another agent is connected", m.Max, window, own.Sessions)
	}
	steady := time.Duration(own.SteadySeconds) * time.Second
	if need := lifecycle.SteadyNeeded(p.interval(), p.period()); steady < need {
		return refuse("your sessions changed %s ago, within the %s the server's datapoints span: yours cannot be told from another agent's", steady, need)
	}
	return ExitDecision{Stop: true, Reason: fmt.Sprintf("at most %.0f agent sessions on the server within the last %s, all %d yours", m.Max, window, own.Sessions)}
}
