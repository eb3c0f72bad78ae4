package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestObserverAdapter drives the observer as the tunnel would and reads the
// metrics back.
func TestObserverAdapter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, Agent)
	o := m.Observer()
	o.SessionUp()
	o.SessionUp()
	o.SessionDown(tunnel.SessionEndPeer)
	o.Reconnect()
	o.RTT(20 * time.Millisecond)
	o.StreamStart(tunnel.KindHTTP)
	o.StreamStart(tunnel.KindConnect)
	o.StreamFirstByte(tunnel.KindHTTP, 30*time.Millisecond)
	o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindHTTP, Code: tunnel.OutcomeOK, Sent: 100, Received: 1000})
	o.StreamEnd(tunnel.StreamStats{Kind: "", Code: tunnel.CodeOverCapacity})
	o.StreamStall(tunnel.KindConnect, 250*time.Millisecond)
	o.StreamStall(tunnel.KindConnect, 750*time.Millisecond)
	o.ConnStall(500 * time.Millisecond)
	m.ObserveWake(40*time.Second, nil)
	m.ObserveWake(time.Second, errors.New("no"))

	for _, c := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.sessions, 1},
		{m.sessionEnds.WithLabelValues("peer_closed"), 1},
		{m.reconnects, 1},
		{m.streams.WithLabelValues("http"), 1},
		{m.streamsActive.WithLabelValues("http"), 0},
		{m.streamsActive.WithLabelValues("connect"), 1},
		{m.bytes.WithLabelValues("http", "sent"), 100},
		{m.bytes.WithLabelValues("http", "received"), 1000},
		{m.outcomes.WithLabelValues("ok"), 1},
		{m.outcomes.WithLabelValues("over_capacity"), 1},
		{m.streamStalls.WithLabelValues("connect"), 2},
		{m.streamStallTime.WithLabelValues("connect"), 1},
		{m.streamStalls.WithLabelValues("http"), 0},
		{m.sessionStalls, 1},
		{m.sessionStallTime, 0.5},
		{m.wakes.WithLabelValues("ok"), 1},
		{m.wakes.WithLabelValues("error"), 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			desc := make(chan *prometheus.Desc, 1)
			c.c.Describe(desc)
			t.Errorf("%v = %v, want %v", <-desc, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "fluidity_agent_keepalive_rtt_seconds", "fluidity_agent_stream_first_byte_seconds"); n != 2 {
		t.Errorf("%d histograms with samples, want 2", n)
	}
	// Server-only metrics are not registered on an agent.
	if n := testutil.CollectAndCount(reg, "fluidity_server_egress_refusals_total"); n != 0 {
		t.Errorf("agent registry has server metrics")
	}
	lint(t, reg)
}

func TestServerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, Server)
	o := m.Observer()
	if o.Reconnect != nil || o.RTT != nil {
		t.Error("server observer asks for agent events")
	}
	o.HandshakeRefused("silent")
	o.BreakerStateChange("closed", "open")
	o.EgressRefused()
	m.ObserveWake(time.Second, nil) // no agent metrics: ignored
	if got := testutil.ToFloat64(m.handshakes.WithLabelValues("silent")); got != 1 {
		t.Errorf("handshake failures %v", got)
	}
	if got := testutil.ToFloat64(m.breakers.WithLabelValues("closed", "open")); got != 1 {
		t.Errorf("breaker changes %v", got)
	}
	if got := testutil.ToFloat64(m.egress); got != 1 {
		t.Errorf("egress refusals %v", got)
	}
	lint(t, reg)
}

// lint runs promlint over everything reg holds.
func lint(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "fluidity_") {
			t.Errorf("metric %s outside the fluidity_ namespace", mf.GetName())
		}
	}
}

// BenchmarkStream is what one stream costs the metrics: its start, its
// answer and its end.
func BenchmarkStream(b *testing.B) {
	o := New(prometheus.NewRegistry(), Agent).Observer()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.StreamStart(tunnel.KindHTTP)
			o.StreamFirstByte(tunnel.KindHTTP, time.Millisecond)
			o.StreamEnd(tunnel.StreamStats{Kind: tunnel.KindHTTP, Code: tunnel.OutcomeOK, Sent: 200, Received: 300})
		}
	})
}
