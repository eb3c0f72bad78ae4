package usage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/rs/zerolog"
)

// Names of the metrics the server publishes and the Sleep and Kill Lambdas read.
const (
	DefaultNamespace = "Fluidity"
	// DefaultService is the ECS service name of the default deployment
	// (fargate.DefaultServiceConfig), the metrics' DimensionService.
	DefaultService          = "fluidity-server"
	MetricActiveConnections = "ActiveConnections"
	MetricLastActivity      = "LastActivityEpochSeconds"
	// MetricSessions is the agent sessions up at any moment since the
	// previous datapoint (see [SessionCounter]); the Kill Lambda reads it
	// for an agent's Kill on exit.
	MetricSessions = "Sessions"
	// DimensionService carries the ECS service name, so several deployments
	// can share an account and the namespace.
	DimensionService = "Service"
)

// StatsSource is what the publisher reads; the tunnel server implements it.
// One that also implements [SessionSource] gets [MetricSessions] published.
type StatsSource interface {
	// ActiveStreams is the number of tunnel streams open right now.
	ActiveStreams() int64
	// LastActivity is when a stream last opened or closed; zero if never.
	LastActivity() time.Time
}

// MetricsPutAPI is the part of the CloudWatch client the publisher uses.
type MetricsPutAPI interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// MetricsGetAPI is the part of the CloudWatch client the metrics reader uses.
type MetricsGetAPI interface {
	GetMetricData(ctx context.Context, in *cloudwatch.GetMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.GetMetricDataOutput, error)
}

// PublisherConfig configures a [Publisher].
type PublisherConfig struct {
	// Namespace of the metrics; the server task role in infra/fargate.yaml may only
	// publish to "Fluidity" (its cloudwatch:namespace condition).
	Namespace string
	// Service is the value of the Service dimension: the ECS service name.
	Service string
	// Interval between publications (the server's metrics_interval).
	Interval time.Duration
	// Timeout bounds each PutMetricData call so a hung endpoint cannot stall
	// the loop past the next tick.
	Timeout time.Duration
	// Watch is how often Run looks at the source between publications, to
	// publish at once when the server goes from idle to active (see Run);
	// zero means [DefaultWatch]. Looking costs two atomic loads.
	Watch time.Duration
}

// DefaultWatch is the default of [PublisherConfig.Watch].
const DefaultWatch = time.Second

// DefaultPublisherConfig returns the seed's settings: every 60 s to "Fluidity".
func DefaultPublisherConfig() PublisherConfig {
	return PublisherConfig{
		Namespace: DefaultNamespace,
		Service:   DefaultService,
		Interval:  60 * time.Second,
		Timeout:   10 * time.Second,
		Watch:     DefaultWatch,
	}
}

// Validate reports unusable settings.
func (c PublisherConfig) Validate() error {
	if strings.TrimSpace(c.Namespace) == "" {
		return errors.New("usage: metrics namespace is empty")
	}
	if strings.TrimSpace(c.Service) == "" {
		return errors.New("usage: metrics service dimension is empty")
	}
	if c.Interval <= 0 {
		return fmt.Errorf("usage: metrics interval %v is not positive", c.Interval)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("usage: metrics timeout %v is not positive", c.Timeout)
	}
	if c.Watch < 0 {
		return fmt.Errorf("usage: metrics watch interval %v is negative", c.Watch)
	}
	return nil
}

// Publisher periodically publishes a [StatsSource] to CloudWatch.
type Publisher struct {
	cfg     PublisherConfig
	api     MetricsPutAPI
	src     StatsSource
	log     zerolog.Logger
	now     func() time.Time
	started time.Time

	mu   sync.Mutex
	last published // the newest successful publication
}

// published is what a publication said, for the idle-to-active check.
type published struct {
	ok      bool
	at      time.Time
	active  int64
	srcLast time.Time // the source's LastActivity, as read
}

// NewPublisher returns a publisher; call Run to start it.
func NewPublisher(cfg PublisherConfig, api MetricsPutAPI, src StatsSource, log zerolog.Logger) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if api == nil || src == nil {
		return nil, errors.New("usage: nil cloudwatch client or stats source")
	}
	return &Publisher{cfg: cfg, api: api, src: src, log: log, now: time.Now, started: time.Now()}, nil
}

// Run publishes at once, then every Interval, until ctx is cancelled; then it
// publishes one last time (bounded by Timeout) so the Sleep Lambda sees the
// final state, and returns nil. Failed publications are logged and simply
// happen again on the next tick: metrics must never take the tunnel down.
//
// Between ticks it looks at the source every Watch and publishes at once
// when the server goes from idle to active: the newest publication said no
// active streams and a last activity at least one Interval old, and now a
// stream is open or a stream has come and gone. Without that, a server
// getting its first request after a quiet spell would look idle to the
// Sleep policy for up to one more interval. It costs at most one extra
// publication per quiet interval: once one says "active", the next
// immediate one needs a tick to have said "idle" again.
func (p *Publisher) Run(ctx context.Context) error {
	// An immediate datapoint lets the idle policy see a freshly woken server
	// as alive instead of waiting one interval.
	p.publishLogged(ctx)
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	watch := p.cfg.Watch
	if watch <= 0 {
		watch = DefaultWatch
	}
	w := time.NewTicker(watch)
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
			p.publishLogged(final)
			cancel()
			return nil
		case <-t.C:
			p.publishLogged(ctx)
		case <-w.C:
			if p.becameActive() {
				p.log.Debug().Msg("idle to active: publishing at once")
				p.publishLogged(ctx)
				t.Reset(p.cfg.Interval)
			}
		}
	}
}

// becameActive applies Run's idle-to-active rule.
func (p *Publisher) becameActive() bool {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if !last.ok || last.active > 0 || last.at.Sub(last.srcLast) < p.cfg.Interval {
		return false
	}
	return p.src.ActiveStreams() > 0 || p.src.LastActivity().After(last.srcLast)
}

func (p *Publisher) publishLogged(ctx context.Context) {
	if err := p.Publish(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		p.log.Warn().Err(err).Dur("retry_in", p.cfg.Interval).Msg("publish metrics failed")
	}
}

// Publish sends one datapoint of each metric (Sessions only when the source
// counts them). A source that has never seen
// activity reports the publisher's start time as its last activity, so an
// unused server still becomes idle one threshold after it started.
func (p *Publisher) Publish(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	now := p.now()
	active := p.src.ActiveStreams()
	srcLast := p.src.LastActivity()
	last := srcLast
	if last.IsZero() {
		last = p.started
	}
	dims := []cwtypes.Dimension{{Name: aws.String(DimensionService), Value: aws.String(p.cfg.Service)}}
	data := []cwtypes.MetricDatum{
		{MetricName: aws.String(MetricActiveConnections), Dimensions: dims, Timestamp: aws.Time(now),
			Value: aws.Float64(float64(active)), Unit: cwtypes.StandardUnitCount},
		{MetricName: aws.String(MetricLastActivity), Dimensions: dims, Timestamp: aws.Time(now),
			Value: aws.Float64(float64(last.Unix())), Unit: cwtypes.StandardUnitSeconds},
	}
	ss, counts := p.src.(SessionSource)
	var sessions int64
	if counts {
		sessions = ss.TakeSessions()
		data = append(data, cwtypes.MetricDatum{MetricName: aws.String(MetricSessions), Dimensions: dims, Timestamp: aws.Time(now),
			Value: aws.Float64(float64(sessions)), Unit: cwtypes.StandardUnitCount})
	}
	_, err := p.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(p.cfg.Namespace), MetricData: data})
	if err != nil {
		if counts {
			ss.ReturnSessions(sessions)
		}
		return fmt.Errorf("put metric data: %w", err)
	}
	p.mu.Lock()
	p.last = published{ok: true, at: now, active: active, srcLast: last}
	p.mu.Unlock()
	p.log.Debug().Int64("active_connections", active).Time("last_activity", last).Int64("sessions", sessions).Msg("metrics published")
	return nil
}

// MetricsConfig says which metrics a [MetricsReader] reads.
type MetricsConfig struct {
	Namespace string
	Service   string
	// Period of the CloudWatch statistics; 60 s matches the standard
	// resolution the publisher writes at.
	Period time.Duration
}

// DefaultMetricsConfig matches [DefaultPublisherConfig].
func DefaultMetricsConfig() MetricsConfig {
	return MetricsConfig{Namespace: DefaultNamespace, Service: DefaultService, Period: time.Minute}
}

// Validate reports unusable settings.
func (c MetricsConfig) Validate() error {
	if strings.TrimSpace(c.Namespace) == "" {
		return errors.New("usage: metrics namespace is empty")
	}
	if strings.TrimSpace(c.Service) == "" {
		return errors.New("usage: metrics service dimension is empty")
	}
	if c.Period < time.Second || c.Period%time.Second != 0 || c.Period/time.Second > math.MaxInt32 {
		return fmt.Errorf("usage: metrics period %v is not a whole number of seconds", c.Period)
	}
	return nil
}

// Snapshot is the newest activity data CloudWatch holds for the service.
// Zero times mean "no datapoint in the window".
type Snapshot struct {
	// ActiveConnections is the maximum of the newest ActiveConnections period.
	ActiveConnections float64
	// ActiveAt is the timestamp of that period.
	ActiveAt time.Time
	// LastActivity is the newest LastActivityEpochSeconds value.
	LastActivity time.Time
	// LastActivityAt is the timestamp of the period it came from.
	LastActivityAt time.Time
}

// MetricsReader reads the server's activity metrics back from CloudWatch.
type MetricsReader struct {
	cfg MetricsConfig
	api MetricsGetAPI
}

// NewMetricsReader returns a reader over api.
func NewMetricsReader(cfg MetricsConfig, api MetricsGetAPI) (*MetricsReader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if api == nil {
		return nil, errors.New("usage: nil cloudwatch client")
	}
	return &MetricsReader{cfg: cfg, api: api}, nil
}

// Read returns the newest datapoints in (now-window, now].
func (r *MetricsReader) Read(ctx context.Context, now time.Time, window time.Duration) (Snapshot, error) {
	dims := []cwtypes.Dimension{{Name: aws.String(DimensionService), Value: aws.String(r.cfg.Service)}}
	query := func(id, metric string) cwtypes.MetricDataQuery {
		return cwtypes.MetricDataQuery{
			Id: aws.String(id),
			MetricStat: &cwtypes.MetricStat{
				Metric: &cwtypes.Metric{Namespace: aws.String(r.cfg.Namespace), MetricName: aws.String(metric), Dimensions: dims},
				Period: aws.Int32(int32(r.cfg.Period / time.Second)), // #nosec G115 -- Validate keeps it within int32
				Stat:   aws.String("Maximum"),
			},
			ReturnData: aws.Bool(true),
		}
	}
	in := &cloudwatch.GetMetricDataInput{
		StartTime:         aws.Time(now.Add(-window)),
		EndTime:           aws.Time(now.Add(r.cfg.Period)), // include the period in progress
		MetricDataQueries: []cwtypes.MetricDataQuery{query("active", MetricActiveConnections), query("last", MetricLastActivity)},
		ScanBy:            cwtypes.ScanByTimestampDescending,
	}
	var snap Snapshot
	p := cloudwatch.NewGetMetricDataPaginator(r.api, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return Snapshot{}, fmt.Errorf("get metric data: %w", err)
		}
		for _, res := range out.MetricDataResults {
			at, v, ok := newest(res)
			if !ok {
				continue
			}
			switch aws.ToString(res.Id) {
			case "active":
				if at.After(snap.ActiveAt) {
					snap.ActiveAt, snap.ActiveConnections = at, v
				}
			case "last":
				if at.After(snap.LastActivityAt) {
					sec, frac := math.Modf(v)
					snap.LastActivityAt, snap.LastActivity = at, time.Unix(int64(sec), int64(frac*1e9))
				}
			}
		}
	}
	return snap, nil
}

// SessionsSnapshot is what CloudWatch holds of [MetricSessions] over a window.
type SessionsSnapshot struct {
	// Max is the most sessions one datapoint of the window counts.
	Max float64
	// Newest is the period start of the newest datapoint; zero when the
	// window holds none.
	Newest time.Time
	// Datapoints is how many periods of the window hold one.
	Datapoints int
}

// ReadSessions returns the Maximum of [MetricSessions] over the periods that
// begin in [now-window, now]. A period that began before the window (the
// service rounds the start time down to its period) is left out: the Kill
// Lambda's subtraction holds only for datapoints inside the window.
func (r *MetricsReader) ReadSessions(ctx context.Context, now time.Time, window time.Duration) (SessionsSnapshot, error) {
	dims := []cwtypes.Dimension{{Name: aws.String(DimensionService), Value: aws.String(r.cfg.Service)}}
	in := &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(now.Add(-window)),
		EndTime:   aws.Time(now.Add(r.cfg.Period)), // include the period in progress
		MetricDataQueries: []cwtypes.MetricDataQuery{{
			Id: aws.String("sessions"),
			MetricStat: &cwtypes.MetricStat{
				Metric: &cwtypes.Metric{Namespace: aws.String(r.cfg.Namespace), MetricName: aws.String(MetricSessions), Dimensions: dims},
				Period: aws.Int32(int32(r.cfg.Period / time.Second)), // #nosec G115 -- Validate keeps it within int32
				Stat:   aws.String("Maximum"),
			},
			ReturnData: aws.Bool(true),
		}},
		ScanBy: cwtypes.ScanByTimestampDescending,
	}
	from := now.Add(-window)
	var snap SessionsSnapshot
	p := cloudwatch.NewGetMetricDataPaginator(r.api, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return SessionsSnapshot{}, fmt.Errorf("get metric data: %w", err)
		}
		for _, res := range out.MetricDataResults {
			for i, at := range res.Timestamps {
				if i >= len(res.Values) || at.Before(from) {
					continue
				}
				snap.Datapoints++
				snap.Max = max(snap.Max, res.Values[i])
				if at.After(snap.Newest) {
					snap.Newest = at
				}
			}
		}
	}
	return snap, nil
}

// newest picks the latest datapoint without trusting the result order.
func newest(res cwtypes.MetricDataResult) (time.Time, float64, bool) {
	var at time.Time
	var v float64
	found := false
	for i := range res.Timestamps {
		if i >= len(res.Values) {
			break
		}
		if !found || res.Timestamps[i].After(at) {
			at, v, found = res.Timestamps[i], res.Values[i], true
		}
	}
	return at, v, found
}

// NewCloudWatchClient returns a CloudWatch client that speaks the awsJson1_0
// protocol instead of the SDK's default rpc-v2-CBOR. CloudWatch accepts both;
// JSON is also what local emulators (moto) understand, so the client tested
// locally is byte-for-byte the client shipped.
//
// Request compression is off: with the protocol swapped, the SDK labels
// PutMetricData bodies "Content-Encoding: gzip" without compressing them,
// which any receiver rejects, and our payloads are a few hundred bytes.
func NewCloudWatchClient(cfg aws.Config, optFns ...func(*cloudwatch.Options)) *cloudwatch.Client {
	opts := append([]func(*cloudwatch.Options){func(o *cloudwatch.Options) {
		o.Protocol = awsjson.New10(cwschemas.GraniteServiceVersion20100801)
		o.DisableRequestCompression = true
	}}, optFns...)
	return cloudwatch.NewFromConfig(cfg, opts...)
}

// NewMetricsReaderFromConfig builds a [MetricsReader] from an SDK configuration.
func NewMetricsReaderFromConfig(awsCfg aws.Config, cfg MetricsConfig) (*MetricsReader, error) {
	return NewMetricsReader(cfg, NewCloudWatchClient(awsCfg))
}

// NewPublisherFromConfig builds a [Publisher] from an SDK configuration.
func NewPublisherFromConfig(awsCfg aws.Config, cfg PublisherConfig, src StatsSource, log zerolog.Logger) (*Publisher, error) {
	return NewPublisher(cfg, NewCloudWatchClient(awsCfg), src, log)
}
