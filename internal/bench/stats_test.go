package bench

import (
	"math"
	"os"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
	} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("Percentile(1..100 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile modified its input")
	}
	if got := Percentile(nil, 99); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("Percentile of one sample = %v, want 7", got)
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd median = %v, want 2", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("even median = %v, want 2.5", got)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("median of nothing should be NaN")
	}
}

func TestRatesAndRatios(t *testing.T) {
	if got := MBps(500e6, 2*time.Second); got != 250 {
		t.Errorf("MBps = %v, want 250", got)
	}
	if !math.IsNaN(MBps(1, 0)) {
		t.Error("MBps over zero time should be NaN")
	}
	if got := Ms(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("Ms = %v, want 1.5", got)
	}
	if got := Ratio(3, 2); got != 1.5 {
		t.Errorf("Ratio = %v", got)
	}
	for _, c := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}} {
		if !math.IsNaN(Ratio(c[0], c[1])) {
			t.Errorf("Ratio(%v, %v) should be NaN", c[0], c[1])
		}
	}
}

func TestParseFigures(t *testing.T) {
	got, err := ParseFigures("figure1, Figure3,9")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[1] || !got[3] || !got[9] {
		t.Errorf("ParseFigures = %v", got)
	}
	if got, err := ParseFigures(""); err != nil || len(got) != 0 {
		t.Errorf("empty list = %v, %v", got, err)
	}
	for _, bad := range []string{"figure10", "figure0", "bulk"} {
		if _, err := ParseFigures(bad); err == nil {
			t.Errorf("ParseFigures(%q) should fail", bad)
		}
	}
}

func TestTail(t *testing.T) {
	tl := &tail{max: 4}
	_, _ = tl.Write([]byte("abc"))
	_, _ = tl.Write([]byte("defg"))
	if got := tl.String(); got != "defg" {
		t.Errorf("tail = %q, want %q", got, "defg")
	}
}

func TestIOCalls(t *testing.T) {
	n, err := IOCalls(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		t.Errorf("IOCalls = %d, want > 0", n)
	}
}
