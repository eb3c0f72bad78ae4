package vulndb

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestGate(t *testing.T) {
	stream, err := os.ReadFile("testdata/govulncheck.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		accepted map[string]string
		wantErr  error
		want     []string // lines the summary holds
		notWant  []string
	}{
		{
			name:    "nothing accepted",
			wantErr: ErrFindings,
			want: []string{
				"VULNERABLE GO-2099-0001  stdlib@v1.26.8 (fixed in v1.99.1), e.g. cmd/main.go:7",
				"VULNERABLE GO-2099-0002  example.com/mod@v1.2.0 (fixed in v1.2.3), e.g. srv/load.go:3",
				"standard library of go1.26.8",
			},
			// Imported or required but never called: govulncheck's exit status ignores them too.
			notWant: []string{"GO-2099-0003", "GO-2099-0004"},
		},
		{
			name:     "the stdlib one accepted",
			accepted: map[string]string{"GO-2099-0001": "toolchain"},
			wantErr:  ErrFindings,
			want:     []string{"ACCEPTED GO-2099-0001", "why: toolchain", "VULNERABLE GO-2099-0002"},
		},
		{
			name:     "all accepted, one stale",
			accepted: map[string]string{"GO-2099-0001": "a", "GO-2099-0002": "b", "GO-2099-0009": "c"},
			want:     []string{"GO-2099-0009 is accepted but no longer found", "(2 accepted)"},
			notWant:  []string{"VULNERABLE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Gate(bytes.NewReader(stream), tt.accepted, &out)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Gate: %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("summary has %q:\n%s", w, out.String())
				}
			}
			if n := strings.Count(out.String(), "GO-2099-0001  "); n != 1 {
				t.Errorf("GO-2099-0001 listed %d times, want once for its two traces", n)
			}
		})
	}
}

func TestGateRefusesBrokenStream(t *testing.T) {
	for name, stream := range map[string]string{
		"empty":     "",
		"no config": `{"finding":{"osv":"GO-1","trace":[{"module":"m","function":"f"}]}}`,
		"cut off":   `{"config":{"go_version":"go1.26.8"}}{"finding":{"osv":`,
	} {
		t.Run(name, func(t *testing.T) {
			err := Gate(strings.NewReader(stream), nil, &bytes.Buffer{})
			if err == nil || errors.Is(err, ErrFindings) {
				t.Errorf("Gate: %v, want a decoding error", err)
			}
		})
	}
}

func TestParseAccepted(t *testing.T) {
	got, err := ParseAccepted(strings.NewReader("# comment\n\nGO-1 the reason, with words\n  GO-2\tstill fine\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["GO-1"] != "the reason, with words" || got["GO-2"] != "still fine" {
		t.Errorf("ParseAccepted = %q", got)
	}
	if _, err := ParseAccepted(strings.NewReader("GO-3\n")); err == nil {
		t.Error("an entry without a reason was accepted")
	}
}
