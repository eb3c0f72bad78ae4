package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sampleReport() *Report {
	rep := &Report{}
	r := rep.Add("bulk.down", "1. Bulk", "download MB/s", true)
	r.Values[Direct], r.Values[Fluidity], r.Values[SSH] = 3000, 900, 600
	r = rep.Add("hol.p99", "5. HOL", "p99 ms", false)
	r.Values[Fluidity], r.Values[SSH] = 2, 10
	rep.Add("wan.down", "2. WAN", "a|b", true) // nothing measured
	r = rep.Add("mem.agent.idle", "6. Memory", "agent MB", false)
	r.Values[Fluidity] = 25
	return rep
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{1234.4: "1234", 12.34: "12.3", 1.234: "1.23", 0.0512: "0.051", 0: "0.00", math.NaN(): "—"} {
		if got := FormatValue(v); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", v, got, want)
		}
	}
	if got := FormatRatio(1.5); got != "1.50×" {
		t.Errorf("FormatRatio = %q", got)
	}
	if got := FormatRatio(math.Inf(1)); got != "—" {
		t.Errorf("FormatRatio(Inf) = %q", got)
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b strings.Builder
	if err := sampleReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("want header, separator and 4 rows, got %d lines:\n%s", len(lines), b.String())
	}
	want := "| 1. Bulk | download MB/s | 3000 | 900 | 600 | 1.50× | 0.30× | higher |"
	if lines[2] != want {
		t.Errorf("row =\n%s\nwant\n%s", lines[2], want)
	}
	if !strings.HasPrefix(lines[1], "| --- |") || strings.Count(lines[1], "---") != 8 {
		t.Errorf("separator = %q", lines[1])
	}
	if !strings.Contains(lines[4], `a\|b`) || !strings.Contains(lines[4], "| — | — | — | — | — |") {
		t.Errorf("unmeasured row = %q", lines[4])
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := sampleReport().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines", len(lines))
	}
	// Columns line up: "direct" starts at the same offset as "3000".
	if strings.Index(lines[0], "direct") != strings.Index(lines[1], "3000") {
		t.Errorf("columns not aligned:\n%s", b.String())
	}
}

func TestGoals(t *testing.T) {
	goals := map[string]Goal{}
	for _, g := range sampleReport().Goals() {
		goals[g.Text] = g
	}
	check := func(prefix string, status Status, measured string) {
		t.Helper()
		for text, g := range goals {
			if strings.HasPrefix(text, prefix) {
				if g.Status != status || g.Measured != measured {
					t.Errorf("%s: got %s %s, want %s %s", text, g.Status, g.Measured, status, measured)
				}
				return
			}
		}
		t.Errorf("no goal %q", prefix)
	}
	check("Bulk download on loopback", Pass, "1.50×")
	check("Head-of-line", Pass, "0.20×")
	check("Agent idle RSS", Fail, "25.00 MB")
	check("Bulk download over 40 ms", NotMeasured, "—")
}

func TestKeptSection(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "BENCHMARKS.md")
	if got := KeptSection(p); got != "" {
		t.Errorf("missing file: %q", got)
	}
	if err := os.WriteFile(p, []byte("# generated\n\n"+KeepMarker+"\n\n## Profile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := KeptSection(p), "\n"+KeepMarker+"\n\n## Profile\n"; got != want {
		t.Errorf("KeptSection = %q, want %q", got, want)
	}
	if err := os.WriteFile(p, []byte("# generated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := KeptSection(p); got != "" {
		t.Errorf("no marker: %q", got)
	}
}
