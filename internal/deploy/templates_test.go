package deploy

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fluidity-tunnel/fluidity/infra"
)

// TestTemplateDefaults: the defaults deploy assumes are the templates' own:
// both stacks' MetricsInterval is DefaultMetricsInterval (a run without
// --metrics-interval changes nothing), and the control plane's IdleThreshold,
// which deploy does not set, is the one Validate measures the interval against.
func TestTemplateDefaults(t *testing.T) {
	t.Parallel()
	defaults := func(body string) map[string]string {
		t.Helper()
		var doc struct {
			Parameters map[string]struct {
				Default string `yaml:"Default"`
			} `yaml:"Parameters"`
		}
		if err := yaml.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for k, p := range doc.Parameters {
			out[k] = p.Default
		}
		return out
	}
	server, control := defaults(infra.FargateTemplate), defaults(infra.ControlPlaneTemplate)
	want := metricsInterval(DefaultMetricsInterval)
	if server["MetricsInterval"] != want || control["MetricsInterval"] != want {
		t.Errorf("MetricsInterval defaults %q (fargate.yaml), %q (control-plane.yaml), want %q", server["MetricsInterval"], control["MetricsInterval"], want)
	}
	if d, err := time.ParseDuration(control["IdleThreshold"]); err != nil || d != idleThreshold {
		t.Errorf("control-plane.yaml IdleThreshold default %q (%v), want %v", control["IdleThreshold"], err, idleThreshold)
	}
}
