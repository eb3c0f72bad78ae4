// Package metrics counts what the tunnel does as Prometheus metrics: it
// implements a tunnel.Observer with client_golang collectors registered on a
// registry the daemon provides (never the global one).
//
// Names follow Prometheus conventions: fluidity_agent_… or fluidity_server_…,
// counters end in _total, durations are in seconds and sizes in bytes. No label
// carries a URL, path, host or client address: labels are the stream kind
// (http, connect, websocket), an outcome code, a direction, a session end or
// handshake reason, or a breaker state, all from small fixed sets.
package metrics

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Daemon says which daemon's metrics a Metrics holds; it is the second word of
// every name.
type Daemon string

// The daemons.
const (
	Agent  Daemon = "agent"
	Server Daemon = "server"
)

// Metrics holds one daemon's tunnel metrics.
type Metrics struct {
	streamsActive *prometheus.GaugeVec
	streams       *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	outcomes      *prometheus.CounterVec
	firstByte     *prometheus.HistogramVec
	sessions      prometheus.Gauge
	sessionEnds   *prometheus.CounterVec
	// Writes that blocked (tunnel.StallThreshold): into streams, and of a
	// session's frames to its connection.
	streamStalls     *prometheus.CounterVec
	streamStallTime  *prometheus.CounterVec
	sessionStalls    prometheus.Counter
	sessionStallTime prometheus.Counter

	// agent
	reconnects prometheus.Counter
	rtt        prometheus.Histogram
	wakes      *prometheus.CounterVec
	wakeTime   prometheus.Histogram

	// server
	handshakes *prometheus.CounterVec
	breakers   *prometheus.CounterVec
	egress     prometheus.Counter

	// The children every stream touches, resolved once: a WithLabelValues
	// hashes its labels and takes the vector's lock, four to six times per
	// stream, which was about 4 % of the agent's CPU forwarding small plain
	// HTTP requests (BENCHMARKS.md).
	perKind   [len(kinds)]kindMetrics
	outcomeOK prometheus.Counter
}

// kindMetrics are one stream kind's children of the per-kind vectors.
type kindMetrics struct {
	streams, sent, received, stalls, stallTime prometheus.Counter
	active                                     prometheus.Gauge
	// firstByte is resolved at the first answer: a histogram shows only once
	// it has a sample, as before.
	firstByte *atomic.Pointer[prometheus.Observer]
}

var kinds = [...]tunnel.StreamKind{tunnel.KindHTTP, tunnel.KindConnect, tunnel.KindWebSocket}

// Buckets. First bytes: 5 ms to 41 s, doubling (a target's answer, through
// a dial and TLS). Round trips: 1 ms to 8 s. Wake-ups: the Fargate task takes
// tens of seconds to a couple of minutes to start.
var (
	firstByteBuckets = prometheus.ExponentialBuckets(0.005, 2, 14)
	rttBuckets       = prometheus.ExponentialBuckets(0.001, 2, 14)
	wakeBuckets      = []float64{1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300}
)

// New registers d's metrics on reg.
func New(reg prometheus.Registerer, d Daemon) *Metrics {
	ns, sub := "fluidity", string(d)
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: name, Help: help}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels)
		reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(v)
		return v
	}
	counter1 := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts(opts(name, help)))
		reg.MustRegister(c)
		return c
	}
	histogram1 := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
		reg.MustRegister(h)
		return h
	}
	m := &Metrics{
		streamsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("streams_active", "Streams open now, by kind.")), []string{"kind"}),
		streams:       counter("streams_total", "Streams started, by kind (http, connect, websocket).", "kind"),
		bytes:         counter("stream_bytes_total", "Bytes carried by streams, by kind and direction (sent or received by this daemon on the tunnel).", "kind", "direction"),
		outcomes:      counter("stream_outcomes_total", "Streams ended, by outcome: ok, or the error code (see PROTOCOL.md; also canceled, tunnel_unavailable, aborted, idle_timeout).", "code"),
		firstByte:     histogram("stream_first_byte_seconds", "Time from a stream's start to its answer (response headers, or CONNECT connected), by kind.", firstByteBuckets, "kind"),
		sessions:      prometheus.NewGauge(prometheus.GaugeOpts(opts("sessions", "Tunnel sessions (connections) up now."))),
		sessionEnds:   counter("session_ends_total", "Tunnel sessions ended, by reason (closed, peer_closed, keepalive_timeout, connection_error).", "reason"),
	}
	stall := tunnel.StallThreshold
	m.streamStalls = counter("stream_write_stalls_total", fmt.Sprintf("Writes into streams that blocked for longer than %v, by kind: the peer's window for the stream was full (its reader is slower than this writer, or the window is smaller than bandwidth times round trip), or the session's connection was backed up.", stall), "kind")
	m.streamStallTime = counter("stream_write_stall_seconds_total", fmt.Sprintf("Time spent in writes into streams that blocked for longer than %v, by kind.", stall), "kind")
	m.sessionStalls = counter1("session_write_stalls_total", fmt.Sprintf("Writes of a session's frames to its connection that blocked for longer than %v: the kernel's send buffer was full (TCP flow control: a slow or lossy link, or a peer that does not read).", stall))
	m.sessionStallTime = counter1("session_write_stall_seconds_total", fmt.Sprintf("Time spent in writes of sessions' frames to their connections that blocked for longer than %v.", stall))
	reg.MustRegister(m.streamsActive, m.sessions)
	for i, k := range kinds {
		m.perKind[i] = m.resolve(k)
	}
	m.outcomeOK = m.outcomes.WithLabelValues(string(tunnel.OutcomeOK))
	switch d {
	case Agent:
		m.reconnects = counter1("reconnects_total", "Sessions established in place of one that was up before.")
		m.rtt = histogram1("keepalive_rtt_seconds", "Round trips to the server measured by pings (one per keepalive interval per session).", rttBuckets)
		m.wakes = counter("wake_calls_total", "Wake-ups of the sleeping server the agent started (each polls the Wake API until the server runs), by result (ok or error).", "result")
		m.wakes.WithLabelValues("ok")
		m.wakes.WithLabelValues("error")
		m.wakeTime = histogram1("wake_duration_seconds", "Time from a wake-up's start until the server was running (or the wake-up failed).", wakeBuckets)
	case Server:
		m.handshakes = counter("handshake_failures_total", "Connections that did not become sessions, by reason (evicted, evicted_source, silent, slow, denied, failed, decoy).", "reason")
		m.breakers = counter("breaker_state_changes_total", "Circuit breaker transitions, by state left and entered (closed, half-open, open).", "from", "to")
		m.egress = counter1("egress_refusals_total", "Targets refused by the egress policy.")
	}
	return m
}

// resolve returns k's children (creating them, so that they show as zero
// before the first stream).
func (m *Metrics) resolve(k tunnel.StreamKind) kindMetrics {
	l := string(k)
	return kindMetrics{
		streams:   m.streams.WithLabelValues(l),
		sent:      m.bytes.WithLabelValues(l, "sent"),
		received:  m.bytes.WithLabelValues(l, "received"),
		stalls:    m.streamStalls.WithLabelValues(l),
		stallTime: m.streamStallTime.WithLabelValues(l),
		active:    m.streamsActive.WithLabelValues(l),
		firstByte: new(atomic.Pointer[prometheus.Observer]),
	}
}

func (m *Metrics) observeFirstByte(k tunnel.StreamKind, d time.Duration) {
	km := m.kind(k)
	o := km.firstByte.Load()
	if o == nil {
		h := m.firstByte.WithLabelValues(string(k))
		o = &h
		km.firstByte.Store(o)
	}
	(*o).Observe(d.Seconds())
}

// kind returns k's children: resolved at start-up for the known kinds, looked
// up for any other (which the tunnel does not report today).
func (m *Metrics) kind(k tunnel.StreamKind) kindMetrics {
	for i, known := range kinds {
		if k == known {
			return m.perKind[i]
		}
	}
	return m.resolve(k)
}

// Observer returns the tunnel.Observer that feeds m, for ClientConfig or
// ServerConfig; nil for nil metrics.
func (m *Metrics) Observer() *tunnel.Observer {
	if m == nil {
		return nil
	}
	o := &tunnel.Observer{
		StreamStart: func(k tunnel.StreamKind) {
			km := m.kind(k)
			km.streams.Inc()
			km.active.Inc()
		},
		StreamFirstByte: m.observeFirstByte,
		StreamEnd:       m.streamEnd,
		StreamStall: func(k tunnel.StreamKind, d time.Duration) {
			km := m.kind(k)
			km.stalls.Inc()
			km.stallTime.Add(d.Seconds())
		},
		ConnStall: func(d time.Duration) {
			m.sessionStalls.Inc()
			m.sessionStallTime.Add(d.Seconds())
		},
		SessionUp: m.sessions.Inc,
		SessionDown: func(reason string) {
			m.sessions.Dec()
			m.sessionEnds.WithLabelValues(reason).Inc()
		},
	}
	if m.reconnects != nil {
		o.Reconnect = m.reconnects.Inc
		o.RTT = func(d time.Duration) { m.rtt.Observe(d.Seconds()) }
	}
	if m.handshakes != nil {
		o.HandshakeRefused = func(reason string) { m.handshakes.WithLabelValues(reason).Inc() }
		o.BreakerStateChange = func(from, to string) { m.breakers.WithLabelValues(from, to).Inc() }
		o.EgressRefused = m.egress.Inc
	}
	return o
}

func (m *Metrics) streamEnd(s tunnel.StreamStats) {
	if s.Code == tunnel.OutcomeOK {
		m.outcomeOK.Inc()
	} else {
		m.outcomes.WithLabelValues(string(s.Code)).Inc()
	}
	if s.Kind == "" {
		return // refused before its request frame: never started
	}
	km := m.kind(s.Kind)
	km.sent.Add(float64(s.Sent))
	km.received.Add(float64(s.Received))
	// Last, so that a scrape that sees the stream gone sees its bytes too.
	km.active.Dec()
}

// ObserveWake records one wake-up of the server (agent metrics only): how
// long it took and whether it ended with the server running.
func (m *Metrics) ObserveWake(elapsed time.Duration, err error) {
	if m == nil || m.wakes == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.wakes.WithLabelValues(result).Inc()
	m.wakeTime.Observe(elapsed.Seconds())
}

// NewRegistry returns a registry holding d's tunnel metrics, with the Go
// runtime's (go_…) and the process's (process_…: memory, CPU, descriptors),
// and the tunnel metrics themselves.
func NewRegistry(d Daemon) (*prometheus.Registry, *Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, New(reg, d)
}
