// Package handler holds the logic of the Wake, Sleep and Kill Lambdas so it
// can be tested without the Lambda runtime; the mains only read the
// environment and wire clients.
package handler

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
	"github.com/fluidity-tunnel/fluidity/lifecycle/usage"
)

// Controller is what the Wake and Kill handlers need from [fargate.Service].
type Controller interface {
	Wake(ctx context.Context) (fargate.Status, error)
	Kill(ctx context.Context) (fargate.Status, error)
	// Status reads the state (with a running task's address) and changes
	// nothing: the Wake handler's probe and long-poll.
	Status(ctx context.Context) (fargate.Status, error)
}

// Config is what the mains read from the environment.
type Config struct {
	Cluster       string
	Service       string
	TunnelPort    int
	IdleThreshold time.Duration
	// WakeGrace, IdleConfirmAfter and CrashBound complete the Sleep policy
	// (see fargate.IdlePolicy); the Kill Lambda uses WakeGrace too.
	WakeGrace        time.Duration
	IdleConfirmAfter time.Duration
	CrashBound       time.Duration
	// MetricsInterval is the server's metrics_interval and MetricsPeriod the
	// statistics period the Kill Lambda reads Sessions with (see
	// fargate.ExitPolicy); the period stays at one minute on AWS, where
	// standard-resolution metrics have no shorter one.
	MetricsInterval time.Duration
	MetricsPeriod   time.Duration
	Namespace       string
	LogLevel        zerolog.Level
}

// ExitPolicy is the Kill on exit policy of this configuration.
func (c Config) ExitPolicy() fargate.ExitPolicy {
	return fargate.ExitPolicy{WakeGrace: c.WakeGrace, MetricsInterval: c.MetricsInterval, Period: c.MetricsPeriod}
}

// Policy is the Sleep policy of this configuration.
func (c Config) Policy() fargate.IdlePolicy {
	return fargate.IdlePolicy{Threshold: c.IdleThreshold, WakeGrace: c.WakeGrace, ConfirmAfter: c.IdleConfirmAfter, CrashBound: c.CrashBound}
}

// DefaultConfig holds the values used when a variable is unset.
func DefaultConfig() Config {
	p := fargate.DefaultIdlePolicy()
	return Config{
		TunnelPort:       443, // what infra/fargate.yaml publishes
		IdleThreshold:    p.Threshold,
		WakeGrace:        p.WakeGrace,
		IdleConfirmAfter: p.ConfirmAfter,
		CrashBound:       p.CrashBound,
		MetricsInterval:  usage.DefaultPublisherConfig().Interval,
		MetricsPeriod:    usage.DefaultMetricsConfig().Period,
		Namespace:        usage.DefaultNamespace,
		LogLevel:         zerolog.InfoLevel,
	}
}

// ConfigFromEnv reads CLUSTER_NAME, SERVICE_NAME (required), TUNNEL_PORT,
// IDLE_THRESHOLD, WAKE_GRACE, IDLE_CONFIRM_AFTER, CRASH_BOUND,
// METRICS_INTERVAL, METRICS_PERIOD (Go durations such as "15m"), METRICS_NAMESPACE and
// LOG_LEVEL through getenv (os.Getenv in the mains).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	c.Cluster = getenv("CLUSTER_NAME")
	c.Service = getenv("SERVICE_NAME")
	if v := getenv("TUNNEL_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return Config{}, fmt.Errorf("TUNNEL_PORT %q: %w", v, err)
		}
		c.TunnelPort = p
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{
		{"IDLE_THRESHOLD", &c.IdleThreshold}, {"WAKE_GRACE", &c.WakeGrace}, {"IDLE_CONFIRM_AFTER", &c.IdleConfirmAfter},
		{"CRASH_BOUND", &c.CrashBound}, {"METRICS_INTERVAL", &c.MetricsInterval}, {"METRICS_PERIOD", &c.MetricsPeriod},
	} {
		if v := getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil {
				return Config{}, fmt.Errorf("%s %q: %w", d.name, v, err)
			}
			*d.dst = x
		}
	}
	if v := getenv("METRICS_NAMESPACE"); v != "" {
		c.Namespace = v
	}
	if v := getenv("LOG_LEVEL"); v != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(v))
		if err != nil {
			return Config{}, fmt.Errorf("LOG_LEVEL %q: %w", v, err)
		}
		c.LogLevel = l
	}
	return c, c.Validate()
}

// Validate reports missing or impossible settings.
func (c Config) Validate() error {
	if err := (fargate.ServiceConfig{Cluster: c.Cluster, Service: c.Service}).Validate(); err != nil {
		return fmt.Errorf("CLUSTER_NAME/SERVICE_NAME: %w", err)
	}
	if c.TunnelPort < 1 || c.TunnelPort > 65535 {
		return fmt.Errorf("TUNNEL_PORT %d out of range", c.TunnelPort)
	}
	if err := c.Policy().Validate(); err != nil {
		return fmt.Errorf("IDLE_THRESHOLD/WAKE_GRACE/IDLE_CONFIRM_AFTER/CRASH_BOUND: %w", err)
	}
	if c.MetricsInterval < time.Second {
		return fmt.Errorf("METRICS_INTERVAL %v is under a second", c.MetricsInterval)
	}
	if err := (usage.MetricsConfig{Namespace: c.Namespace, Service: c.Service, Period: c.MetricsPeriod}).Validate(); err != nil {
		return fmt.Errorf("METRICS_PERIOD/METRICS_NAMESPACE: %w", err)
	}
	return nil
}

// Wake serves POST /wake.
type Wake struct {
	Service    Controller
	TunnelPort int
	// PollEvery paces the status reads of a long-poll (default 1 s: each is
	// a few ECS and EC2 reads).
	PollEvery time.Duration
	Log       zerolog.Logger
}

// wakeAnswerMargin is kept free of a long-poll before the Lambda's own
// deadline, to answer in time.
const wakeAnswerMargin = 2 * time.Second

// Handle raises the desired count to 1 (if it is 0) and answers with the
// state and, once running, the address to dial. The body may ask for a
// probe ({"probe":true}: the state only, nothing woken or recorded) or a
// long-poll ({"wait_seconds":N}: wait, up to N s capped at
// lifecycle.MaxWakeWait and the Lambda's deadline, until the server is
// running with an address or has failed).
func (h *Wake) Handle(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	log := requestLogger(ctx, h.Log, req)
	if resp, ok := onlyPost(req); !ok {
		log.Warn().Str("method", req.HTTPMethod).Msg("wake: method not allowed")
		return resp, nil
	}
	var wr lifecycle.WakeRequest
	if body, err := requestBody(req); err != nil || (len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &wr) != nil) || wr.WaitSeconds < 0 {
		log.Warn().Msg("wake: body is not a JSON wake request")
		//nolint:nilerr // a bad body is the caller's 400; the handler's error is for failures of its own
		return jsonResponse(http.StatusBadRequest, lifecycle.ErrorBody{Code: lifecycle.CodeBadRequest, Message: `wake: the body must be {}, {"probe":true} or {"wait_seconds":N}`}), nil
	}
	op, call := "wake", h.Service.Wake
	if wr.Probe {
		op, call = "probe", h.Service.Status
	}
	st, err := call(ctx)
	if err != nil {
		return awsFailure(log, op, err), nil
	}
	res := fargate.ResultFromStatus(st, h.TunnelPort)
	if !wr.Probe && wr.WaitSeconds > 0 {
		res, err = h.wait(ctx, res, time.Duration(wr.WaitSeconds)*time.Second)
		if err != nil {
			return awsFailure(log, op, err), nil
		}
	}
	log.Info().Str("op", op).Str("state", string(res.State)).Int32("desired_count", res.DesiredCount).
		Int32("running_count", res.RunningCount).Bool("has_address", res.Address != "").Msg("wake")
	return jsonResponse(http.StatusOK, res), nil
}

// wait re-reads the state until the server is running with an address or
// has failed, or the wait is over; then it answers the newest state.
func (h *Wake) wait(ctx context.Context, res lifecycle.WakeResult, wait time.Duration) (lifecycle.WakeResult, error) {
	wait = min(wait, lifecycle.MaxWakeWait)
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)-wakeAnswerMargin)
	}
	every := h.PollEvery
	if every <= 0 {
		every = time.Second
	}
	deadline := time.Now().Add(wait)
	for res.State != lifecycle.StateFailed && (res.State != lifecycle.StateRunning || res.Address == "") {
		if time.Until(deadline) < every {
			break
		}
		t := time.NewTimer(every)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return res, nil
		}
		st, err := h.Service.Status(ctx)
		if err != nil {
			return res, err
		}
		res = fargate.ResultFromStatus(st, h.TunnelPort)
	}
	return res, nil
}

// Kill serves POST /kill and the nightly EventBridge schedule.
//
// Multi-agent safety is decided here, in the Kill Lambda, on what the server
// saw: its Sessions datapoints, minus the exiting agent's own sessions, and
// the last Wake on the service's tags ([fargate.ExitPolicy] has the rules
// and why). The Lambda also knows of an agent that woke the server a moment
// ago and has no session yet, which the server cannot. An agent's Kill on
// exit (body {"reason":"agent_exit","own":{"sessions":N,"steady_seconds":S}})
// that the policy refuses is answered 409 in_use with the reason, which the
// agent logs; the Sleep policy then puts the server down once idle, at most
// an idle threshold of Fargate time later.
//
// A Kill without a reason (`fluidity sleep`) and the nightly schedule set
// the desired count to 0 at once.
type Kill struct {
	Service Controller
	// Metrics reads the server's Sessions datapoints for the agent_exit
	// check; without it every agent's Kill on exit is refused (nothing
	// shows who is connected).
	Metrics SessionsReader
	Policy  fargate.ExitPolicy
	// Now defaults to time.Now.
	Now func() time.Time
	Log zerolog.Logger
}

// SessionsReader is what Kill needs from [usage.MetricsReader].
type SessionsReader interface {
	ReadSessions(ctx context.Context, now time.Time, window time.Duration) (usage.SessionsSnapshot, error)
}

// Summarizer reads the service without its tasks ([fargate.Service.Summary]);
// the Kill role may not list tasks.
type Summarizer interface {
	Summary(ctx context.Context) (fargate.Status, error)
}

// Handle tells the event shapes apart from the raw JSON: API Gateway proxy
// requests carry httpMethod/requestContext, EventBridge events carry
// detail-type and source. An API request gets an HTTP answer; a scheduled
// event gets the result document (or an error, which Lambda records and
// EventBridge may retry).
func (h *Kill) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		HTTPMethod     *string          `json:"httpMethod"`
		RequestContext *json.RawMessage `json:"requestContext"`
		DetailType     *string          `json:"detail-type"`
		Source         *string          `json:"source"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("kill: decode event: %w", err)
	}
	switch {
	case probe.HTTPMethod != nil || probe.RequestContext != nil:
		var req events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return nil, fmt.Errorf("kill: decode api gateway request: %w", err)
		}
		return h.HandleAPI(ctx, req)
	case probe.DetailType != nil || probe.Source != nil:
		var ev events.EventBridgeEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("kill: decode eventbridge event: %w", err)
		}
		return h.HandleScheduled(ctx, ev)
	}
	h.Log.Error().Msg("kill: unrecognised event shape")
	return nil, errors.New("kill: unrecognised event: neither an api gateway request nor an eventbridge event")
}

// killPort is the port given to ResultFromStatus for Kill's answers: a killed
// service is sleeping or stopping, and only a running one has an address.
const killPort = 0

// HandleAPI serves POST /kill.
func (h *Kill) HandleAPI(ctx context.Context, req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	log := requestLogger(ctx, h.Log, req)
	if resp, ok := onlyPost(req); !ok {
		log.Warn().Str("method", req.HTTPMethod).Msg("kill: method not allowed")
		return resp, nil
	}
	var kr lifecycle.KillRequest
	if body, err := requestBody(req); err != nil || (len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &kr) != nil) {
		log.Warn().Msg("kill: body is not a JSON kill request")
		//nolint:nilerr // a bad body is the caller's 400; the handler's error is for failures of its own
		return jsonResponse(http.StatusBadRequest, lifecycle.ErrorBody{Code: lifecycle.CodeBadRequest, Message: `kill: the body must be {} or {"reason":"agent_exit","own":{"sessions":N,"steady_seconds":S}}`}), nil
	}
	switch kr.Reason {
	case "":
	case lifecycle.KillReasonAgentExit:
		if resp, done := h.refuseInUse(ctx, log, kr); done {
			return resp, nil
		}
	default:
		log.Warn().Str("reason", kr.Reason).Msg("kill: unknown reason")
		return jsonResponse(http.StatusBadRequest, lifecycle.ErrorBody{Code: lifecycle.CodeBadRequest, Message: "kill: unknown reason"}), nil
	}
	st, err := h.Service.Kill(ctx)
	if err != nil {
		return awsFailure(log, "kill", err), nil
	}
	reason := kr.Reason
	if reason == "" {
		reason = "unconditional"
	}
	log.Info().Str("trigger", "api").Str("reason", reason).Str("state", string(st.State)).Msg("kill: desired count 0")
	return jsonResponse(http.StatusOK, fargate.ResultFromStatus(st, killPort)), nil
}

// refuseInUse applies the agent_exit check documented on Kill. done is true
// when it has answered (refused, failed, or nothing to stop).
func (h *Kill) refuseInUse(ctx context.Context, log zerolog.Logger, kr lifecycle.KillRequest) (events.APIGatewayProxyResponse, bool) {
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	sum, ok := h.Service.(Summarizer)
	if !ok {
		return awsFailure(log, "kill", errors.New("kill: the controller cannot read the service")), true
	}
	st, err := sum.Summary(ctx)
	if err != nil {
		return awsFailure(log, "kill", err), true
	}
	if st.DesiredCount == 0 {
		log.Info().Str("reason", kr.Reason).Str("state", string(st.State)).Msg("kill: already asleep")
		return jsonResponse(http.StatusOK, fargate.ResultFromStatus(st, killPort)), true
	}
	var seen usage.SessionsSnapshot
	if h.Metrics != nil {
		if seen, err = h.Metrics.ReadSessions(ctx, now, h.Policy.Window()); err != nil {
			return awsFailure(log, "kill", err), true
		}
	}
	d := h.Policy.Decide(now, st, kr.Own, seen)
	ev := log.Info().Str("reason", kr.Reason).Float64("sessions_seen", seen.Max).Int("datapoints", seen.Datapoints).Str("why", d.Reason)
	if kr.Own != nil {
		ev = ev.Int64("own_sessions", kr.Own.Sessions).Int64("own_steady_seconds", kr.Own.SteadySeconds)
	}
	if !d.Stop {
		ev.Msg("kill refused: in use")
		return jsonResponse(http.StatusConflict, lifecycle.ErrorBody{Code: lifecycle.CodeInUse, Message: "kill: " + d.Reason}), true
	}
	ev.Msg("kill: nobody else uses the server")
	return events.APIGatewayProxyResponse{}, false
}

func requestBody(req events.APIGatewayProxyRequest) ([]byte, error) {
	if len(req.Body) > 4096 {
		return nil, errors.New("body too large")
	}
	if req.IsBase64Encoded {
		return base64.StdEncoding.DecodeString(req.Body)
	}
	return []byte(req.Body), nil
}

// HandleScheduled serves the nightly schedule.
func (h *Kill) HandleScheduled(ctx context.Context, ev events.EventBridgeEvent) (lifecycle.WakeResult, error) {
	log := eventLogger(ctx, h.Log, ev)
	st, err := h.Service.Kill(ctx)
	if err != nil {
		log.Error().Err(err).Str("trigger", "schedule").Msg("kill failed")
		return lifecycle.WakeResult{}, fmt.Errorf("kill: %w", err)
	}
	log.Info().Str("trigger", "schedule").Str("state", string(st.State)).Msg("kill: desired count 0")
	return fargate.ResultFromStatus(st, killPort), nil
}

// Sleep serves the rate(5 minutes) schedule.
type Sleep struct {
	Policy  fargate.IdlePolicy
	Service *fargate.Service
	Metrics *usage.MetricsReader
	// Now defaults to time.Now.
	Now func() time.Time
	Log zerolog.Logger
}

// SleepResult is what the Sleep Lambda returns (visible in test invocations
// and the Lambda console).
type SleepResult struct {
	Idle         bool            `json:"idle"`
	ScaledToZero bool            `json:"scaled_to_zero"`
	Reason       string          `json:"reason"`
	State        lifecycle.State `json:"state"`
}

// Handle applies the idle policy and scales to zero when idle.
func (h *Sleep) Handle(ctx context.Context, ev events.EventBridgeEvent) (SleepResult, error) {
	log := eventLogger(ctx, h.Log, ev)
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	d, err := h.Policy.Apply(ctx, h.Service, h.Metrics, now())
	if err != nil {
		log.Error().Err(err).Msg("sleep: idle check failed")
		return SleepResult{}, fmt.Errorf("sleep: %w", err)
	}
	ev2 := log.Info()
	if d.ScaleToZero {
		ev2 = log.Warn()
	}
	ev2.Bool("idle", d.Idle).Bool("scaled_to_zero", d.ScaleToZero).Str("reason", d.Reason).Int32("failed_starts", d.Status.FailedStarts).Str("state", string(d.Status.State)).
		Int32("desired_count", d.Status.DesiredCount).Float64("active_connections", d.Data.ActiveConnections).
		Msg("sleep decision")
	return SleepResult{Idle: d.Idle, ScaledToZero: d.ScaleToZero, Reason: d.Reason, State: d.Status.State}, nil
}

func onlyPost(req events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, bool) {
	if strings.EqualFold(req.HTTPMethod, http.MethodPost) {
		return events.APIGatewayProxyResponse{}, true
	}
	resp := jsonResponse(http.StatusMethodNotAllowed, lifecycle.ErrorBody{
		Code: lifecycle.CodeMethodNotAllowed, Message: "use POST",
	})
	resp.Headers["Allow"] = http.MethodPost
	return resp, false
}

// awsFailure logs the detail and answers with a JSON error; the message
// names the failing step but not account details. A missing cluster or
// service is a misconfigured stack, which no retry can mend: 404, so the
// agent reports it once and stops. Everything else is 500 (retryable).
func awsFailure(log zerolog.Logger, op string, err error) events.APIGatewayProxyResponse {
	log.Error().Err(err).Msg(op + " failed")
	status, code, msg := http.StatusInternalServerError, lifecycle.CodeAWS, op+": the ECS service could not be updated or read"
	switch {
	case errors.Is(err, fargate.ErrClusterNotFound):
		status, code, msg = http.StatusNotFound, lifecycle.CodeClusterNotFound, op+": the ECS cluster does not exist (check CLUSTER_NAME)"
	case errors.Is(err, fargate.ErrServiceNotFound):
		status, code, msg = http.StatusNotFound, lifecycle.CodeServiceNotFound, op+": the ECS service does not exist (check CLUSTER_NAME/SERVICE_NAME)"
	}
	return jsonResponse(status, lifecycle.ErrorBody{Code: code, Message: msg})
}

func jsonResponse(status int, v any) events.APIGatewayProxyResponse {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v)
	return events.APIGatewayProxyResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"},
		Body:       buf.String(),
	}
}

func requestLogger(ctx context.Context, log zerolog.Logger, req events.APIGatewayProxyRequest) zerolog.Logger {
	lc := log.With().Str("api_request_id", req.RequestContext.RequestID)
	if c, ok := lambdacontext.FromContext(ctx); ok {
		lc = lc.Str("aws_request_id", c.AwsRequestID)
	}
	return lc.Logger()
}

func eventLogger(ctx context.Context, log zerolog.Logger, ev events.EventBridgeEvent) zerolog.Logger {
	lc := log.With().Str("event_id", ev.ID).Str("detail_type", ev.DetailType)
	if c, ok := lambdacontext.FromContext(ctx); ok {
		lc = lc.Str("aws_request_id", c.AwsRequestID)
	}
	return lc.Logger()
}

// NewLogger returns the JSON logger the Lambdas write to CloudWatch Logs.
func NewLogger(w io.Writer, function string, level zerolog.Level) zerolog.Logger {
	return zerolog.New(w).Level(level).With().Timestamp().Str("lambda", function).Logger()
}
