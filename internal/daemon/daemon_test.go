package daemon

import (
	"errors"
	"runtime/debug"
	"testing"

	"github.com/fluidity-tunnel/fluidity/internal/config"
)

func TestCheckRuntime(t *testing.T) {
	for _, tc := range []struct {
		percent int
		ok      bool
	}{
		{DefaultGCPercent, true},
		{10, true},
		{1000, true},
		{9, false},
		{0, false},
		{-1, false},
	} {
		err := RuntimeSettings{GCPercent: tc.percent}.CheckRuntime()
		var fe *config.FieldError
		switch {
		case tc.ok && err != nil:
			t.Errorf("gc_percent %d: %v", tc.percent, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Key != "gc_percent"):
			t.Errorf("gc_percent %d: got %v, want an error naming gc_percent", tc.percent, err)
		}
	}
}

func TestApplyRuntime(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	RuntimeSettings{GCPercent: 300}.ApplyRuntime([]string{"HOME=/root"})
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("gc percent = %d after ApplyRuntime(300), want 300", got)
	}
	// GOGC in the environment is the person's choice, already applied by the runtime.
	RuntimeSettings{GCPercent: 300}.ApplyRuntime([]string{"GOGC=150"})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("gc percent = %d with GOGC set, want it left at 100", got)
	}
}
