package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Path names, in column order.
const (
	Direct   = "direct"
	Fluidity = "fluidity"
	SSH      = "ssh -D"
)

// Columns is the order in which paths appear in tables.
var Columns = []string{Direct, Fluidity, SSH}

// Row is one figure's metric for every path.
type Row struct {
	Key    string // stable id used by goals, e.g. "bulk.down"
	Figure string // e.g. "1. Bulk (loopback)"
	Metric string // e.g. "download MB/s"
	Higher bool   // true when a higher value is better
	Values map[string]float64
}

// Value returns the row's value for path, or NaN when it was not measured.
func (r *Row) Value(path string) float64 {
	if v, ok := r.Values[path]; ok {
		return v
	}
	return math.NaN()
}

// Report is the result of one benchmark run.
type Report struct {
	Rows  []*Row
	Notes []string // anomalies seen during the run
}

// Add appends a row and returns it so callers can fill in values.
func (rep *Report) Add(key, figure, metric string, higher bool) *Row {
	r := &Row{Key: key, Figure: figure, Metric: metric, Higher: higher, Values: map[string]float64{}}
	rep.Rows = append(rep.Rows, r)
	return r
}

// Row returns the row with key, or nil.
func (rep *Report) Row(key string) *Row {
	for _, r := range rep.Rows {
		if r.Key == key {
			return r
		}
	}
	return nil
}

// Get returns the value of key for path, or NaN.
func (rep *Report) Get(key, path string) float64 {
	if r := rep.Row(key); r != nil {
		return r.Value(path)
	}
	return math.NaN()
}

// FormatValue prints v with precision suited to its magnitude; "—" when missing.
func FormatValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a < 1 && a > 0:
		return fmt.Sprintf("%.3f", v) // CPU seconds per 1000 requests are around 0.05
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// FormatRatio prints a ratio like "1.53×"; "—" when missing.
func FormatRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

func (rep *Report) cells() [][]string {
	head := []string{"Figure", "Metric"}
	head = append(head, Columns...)
	head = append(head, "Fluidity/ssh", "Fluidity/direct", "better")
	out := [][]string{head}
	for _, r := range rep.Rows {
		line := []string{r.Figure, r.Metric}
		for _, c := range Columns {
			line = append(line, FormatValue(r.Value(c)))
		}
		better := "lower"
		if r.Higher {
			better = "higher"
		}
		line = append(line,
			FormatRatio(Ratio(r.Value(Fluidity), r.Value(SSH))),
			FormatRatio(Ratio(r.Value(Fluidity), r.Value(Direct))),
			better)
		out = append(out, line)
	}
	return out
}

// WriteText writes the table with aligned columns for a terminal.
func (rep *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, line := range rep.cells() {
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// WriteMarkdown writes the table as a GitHub markdown table.
func (rep *Report) WriteMarkdown(w io.Writer) error {
	cells := rep.cells()
	var b strings.Builder
	for i, line := range cells {
		b.WriteString("| " + strings.Join(escapeAll(line), " | ") + " |\n")
		if i == 0 {
			b.WriteString("|" + strings.Repeat(" --- |", len(line)) + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeAll(s []string) []string {
	out := make([]string, len(s))
	for i, c := range s {
		out[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	return out
}

// Status is a goal's outcome.
type Status string

const (
	Pass        Status = "pass"
	Fail        Status = "FAIL"
	NotMeasured Status = "not measured"
)

// Goal is one target from the issue, checked against a report.
type Goal struct {
	Text     string
	Measured string
	Status   Status
}

// goalSpec describes a goal as "value(key, path) / value(key, base) op limit",
// or, with no base, "value(key, path) op limit".
type goalSpec struct {
	text      string
	key, path string
	base      string // path to divide by; "" for an absolute limit
	atMost    bool   // true: value <= limit; false: value >= limit
	limit     float64
	unit      string
}

var goalSpecs = []goalSpec{
	{text: "Bulk download on loopback ≥ 1.5× ssh -D", key: "bulk.down", path: Fluidity, base: SSH, limit: 1.5, unit: "×"},
	{text: "Bulk upload on loopback ≥ 1.5× ssh -D", key: "bulk.up", path: Fluidity, base: SSH, limit: 1.5, unit: "×"},
	{text: "Bulk download ≥ 65 % of one Go TLS 1.3 stream", key: "bulk.down.tls", path: Fluidity, limit: 0.65, unit: "×"},
	{text: "Bulk download over 40 ms RTT ≥ 6× ssh -D", key: "wan.down", path: Fluidity, base: SSH, limit: 6, unit: "×"},
	{text: "Bulk upload over 40 ms RTT ≥ 6× ssh -D", key: "wan.up", path: Fluidity, base: SSH, limit: 6, unit: "×"},
	{text: "Small requests at c=64 ≥ 1.2× ssh -D req/s", key: "small.rps", path: Fluidity, base: SSH, limit: 1.2, unit: "×"},
	{text: "Head-of-line p99 ≤ 0.5× ssh -D", key: "hol.p99", path: Fluidity, base: SSH, atMost: true, limit: 0.5, unit: "×"},
	{text: "Small requests inside CONNECT, c=64 ≥ 1.3× ssh -D req/s", key: "tun.rps", path: Fluidity, base: SSH, limit: 1.3, unit: "×"},
	{text: "Small requests inside CONNECT, c=64, p99 ≤ 0.8× ssh -D", key: "tun.p99", path: Fluidity, base: SSH, atMost: true, limit: 0.8, unit: "×"},
	{text: "HTTPS inside CONNECT, c=64 ≥ 1.2× ssh -D req/s", key: "tuntls.rps", path: Fluidity, base: SSH, limit: 1.2, unit: "×"},
	{text: "Head-of-line p99 beside an upload ≤ 0.5× ssh -D", key: "holup.p99", path: Fluidity, base: SSH, atMost: true, limit: 0.5, unit: "×"},
	{text: "New connection over 40 ms RTT, plain HTTP p50 ≤ 1.2 RTT", key: "wan.newhttp.rtt", path: Fluidity, atMost: true, limit: 1.2, unit: " RTT"},
	{text: "New connection over 40 ms RTT, CONNECT p50 ≤ 2.2 RTT", key: "wan.newconnect.rtt", path: Fluidity, atMost: true, limit: 2.2, unit: " RTT"},
	{text: "≤ 64 KiB RSS per idle open stream (agent + server)", key: "mem.stream", path: Fluidity, atMost: true, limit: 64, unit: " KiB"},
	{text: "Agent idle RSS ≤ 20 MB", key: "mem.agent.idle", path: Fluidity, atMost: true, limit: 20, unit: " MB"},
}

// Goals checks the goals for the figures in the report.
func (rep *Report) Goals() []Goal {
	var out []Goal
	for _, g := range goalSpecs {
		if rep.Row(g.key) == nil {
			continue // figure not run
		}
		v := rep.Get(g.key, g.path)
		if g.base != "" {
			v = Ratio(v, rep.Get(g.key, g.base))
		}
		goal := Goal{Text: g.text, Status: NotMeasured, Measured: "—"}
		if !math.IsNaN(v) {
			goal.Measured = fmt.Sprintf("%.2f%s", v, g.unit)
			ok := v >= g.limit
			if g.atMost {
				ok = v <= g.limit
			}
			goal.Status = Fail
			if ok {
				goal.Status = Pass
			}
		}
		out = append(out, goal)
	}
	return out
}

// WriteGoalsMarkdown writes the goals as a markdown table.
func WriteGoalsMarkdown(w io.Writer, goals []Goal) error {
	var b strings.Builder
	b.WriteString("| Goal | Measured | Result |\n| --- | --- | --- |\n")
	for _, g := range goals {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Text, g.Measured, g.Status)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteGoalsText writes the goals for a terminal.
func WriteGoalsText(w io.Writer, goals []Goal) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range goals {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Text, g.Measured, g.Status)
	}
	return tw.Flush()
}
