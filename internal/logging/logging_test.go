package logging

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestNew(t *testing.T) {
	tests := []struct {
		level, format string
		wantLevel     zerolog.Level
		wantErr       string
	}{
		{"", "", zerolog.InfoLevel, ""},
		{"trace", "json", zerolog.TraceLevel, ""},
		{"debug", "json", zerolog.DebugLevel, ""},
		{"INFO", "JSON", zerolog.InfoLevel, ""},
		{"warn", "console", zerolog.WarnLevel, ""},
		{"error", "console", zerolog.ErrorLevel, ""},
		{"verbose", "json", 0, `"verbose"`},
		{"info", "xml", 0, `"xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.level, tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if log.GetLevel() != tt.wantLevel {
				t.Errorf("level = %v, want %v", log.GetLevel(), tt.wantLevel)
			}
			if zerolog.GlobalLevel() != zerolog.TraceLevel {
				t.Errorf("global level changed to %v", zerolog.GlobalLevel())
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Msg("hidden")
	log.Info().Str("domain", "example.com").Msg("connected")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1 (debug must be filtered): %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v: %q", err, lines[0])
	}
	for _, k := range []string{"time", "level", "message", "domain"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("field %q missing from %v", k, rec)
		}
	}
}

func TestConsoleOutput(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "debug", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Str("domain", "example.com").Msg("dialing")
	out := buf.String()
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("console output looks like JSON: %q", out)
	}
	for _, want := range []string{"dialing", "domain=example.com", "DBG"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes written to a non-terminal: %q", out)
	}
}

// TestFieldFormats: durations read as Go writes them and timestamps carry
// milliseconds, in JSON and on the console.
func TestFieldFormats(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, "info", format)
			if err != nil {
				t.Fatal(err)
			}
			log.Info().Dur("retry_in", 2500*time.Millisecond).Dur("took", 150*time.Millisecond).
				Dur("timeout", 30*time.Second).Msg("x")
			out := buf.String()
			var want []string
			if format == "json" {
				want = []string{`"retry_in":"2.5s"`, `"took":"150ms"`, `"timeout":"30s"`}
			} else {
				want = []string{"retry_in=2.5s", "took=150ms", "timeout=30s"}
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %s", out, w)
				}
			}
			if !regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)`).MatchString(out) {
				t.Errorf("no timestamp with milliseconds in %q", out)
			}
		})
	}
}
