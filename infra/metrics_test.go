package infra_test

import (
	"fmt"
	"testing"
)

// TestKillKnowsMetricsInterval: the Kill Lambda is told the server's
// metrics interval (its window for an agent's Kill on exit depends on it),
// and both stacks default to the same one.
func TestKillKnowsMetricsInterval(t *testing.T) {
	t.Parallel()
	fg, cp := templateMap(t, "fargate.yaml"), templateMap(t, "control-plane.yaml")
	fgDefault, cpDefault := fmt.Sprint(dig(t, fg, "Parameters", "MetricsInterval", "Default")), fmt.Sprint(dig(t, cp, "Parameters", "MetricsInterval", "Default"))
	if fgDefault != cpDefault {
		t.Errorf("MetricsInterval defaults: fargate.yaml %s, control-plane.yaml %s", fgDefault, cpDefault)
	}
	if v := dig(t, cp, "Resources", "KillFunction", "Properties", "Environment", "Variables", "METRICS_INTERVAL"); v != "MetricsInterval" {
		t.Errorf("Kill's METRICS_INTERVAL = %v, want !Ref MetricsInterval", v)
	}
}
