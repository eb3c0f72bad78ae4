package crosscheck

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/platform"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		platform, pattern string
		want              []string // substrings of the problems; none: it type-checks
	}{
		{"linux/amd64", ".", nil},
		{"linux/arm64", ".", nil},
		{"darwin/amd64", ".", nil},
		// A function body of the main module's code is checked.
		{"darwin/arm64", ".", []string{"body_darwin.go:6:14: cannot use archWord"}},
		{"windows/amd64", ".", []string{"name.go:8:29: undefined: name"}},
		{"windows/amd64", "./missing", []string{"example.com/platforms/nowhere"}},
	} {
		t.Run(tc.platform+" "+tc.pattern, func(t *testing.T) {
			t.Parallel()
			p, err := platform.Parse(tc.platform)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(context.Background(), "testdata/platforms", p, tc.pattern)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want no problem, got %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want an *Error, got %v", err)
			}
			if ce.Platform != p {
				t.Errorf("error for %v, want %v", ce.Platform, p)
			}
			all := strings.Join(ce.Problems, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems do not mention %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestCheckUnknownArch(t *testing.T) {
	t.Parallel()
	err := Check(context.Background(), "testdata/platforms", platform.Platform{OS: "linux", Arch: "nosucharch"}, ".")
	if err == nil {
		t.Fatal("want an error for an unknown GOARCH")
	}
}
