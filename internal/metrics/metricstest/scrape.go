// Package metricstest scrapes a daemon's /metrics in tests: it lints the
// exposition with promlint and looks values up by name and labels.
package metricstest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one scrape's metric families, by name.
type Scrape map[string]*dto.MetricFamily

// Get fetches url (an admin listener's /metrics), fails t on an HTTP error,
// an unparsable exposition or any promlint problem, and returns the families.
func Get(t testing.TB, url string) Scrape {
	t.Helper()
	s, problems, err := Fetch(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return s
}

// Fetch is Get without a test: it returns promlint's problems.
func Fetch(url string) (Scrape, []promlint.Problem, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err != nil {
		return nil, nil, err
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		return nil, nil, fmt.Errorf("promlint: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return fams, problems, nil
}

// Value is the value of the counter, gauge or (its sample count) histogram
// name whose labels include labels (name, value pairs); 0 when absent.
func (s Scrape) Value(name string, labels ...string) float64 {
	f, ok := s[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// AtLeast is one expectation of WaitFor: the metric name, with labels given
// as name, value pairs, has at least Min.
type AtLeast struct {
	Name   string
	Labels []string
	Min    float64
}

// WaitFor scrapes url until every expectation holds and every gauge in zero
// (name and label pairs, as Value takes them) reads 0, or until timeout, then
// fails t with what was still missing and returns the last scrape. Streams end
// a moment after their clients have their answers, so a test asks until the
// figures are in rather than scraping once.
func WaitFor(t testing.TB, url string, timeout time.Duration, want []AtLeast, zero ...[]string) Scrape {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := Get(t, url)
		var missed []string
		for _, z := range zero {
			if v := s.Value(z[0], z[1:]...); v != 0 {
				missed = append(missed, fmt.Sprintf("%s%v = %v, want 0", z[0], z[1:], v))
			}
		}
		for _, w := range want {
			if v := s.Value(w.Name, w.Labels...); v < w.Min {
				missed = append(missed, fmt.Sprintf("%s%v = %v, want at least %v", w.Name, w.Labels, v, w.Min))
			}
		}
		if len(missed) == 0 {
			return s
		}
		if time.Now().After(deadline) {
			for _, m := range missed {
				t.Error(m)
			}
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
}
