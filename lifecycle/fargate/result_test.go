package fargate_test

import (
	"encoding/json"
	"testing"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
)

func TestResultFromStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		st   fargate.Status
		want string
	}{
		{fargate.Status{State: lifecycle.StateRunning, PublicIP: "203.0.113.5"}, "203.0.113.5:8443"},
		{fargate.Status{State: lifecycle.StateRunning, PublicIP: "2001:db8::1"}, "[2001:db8::1]:8443"},
		{fargate.Status{State: lifecycle.StateStarting, PublicIP: "203.0.113.5"}, ""},
	}
	for _, tc := range tests {
		r := fargate.ResultFromStatus(tc.st, 8443)
		b, _ := json.Marshal(r)
		if r.Address != tc.want {
			t.Errorf("ResultFromStatus(%+v) address %q, want %q (%s)", tc.st, r.Address, tc.want, b)
		}
	}
}
