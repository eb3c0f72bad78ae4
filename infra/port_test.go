package infra_test

import (
	"fmt"
	"strconv"
	"testing"
)

// TestTunnelOn443: the Fargate stack publishes the tunnel on 443 for a
// non-root server (the task's network namespace lets unprivileged processes
// bind it), one TunnelPort drives the listener, the mapping, the security
// group and the address Wake reports, and the decoy is on.
func TestTunnelOn443(t *testing.T) {
	t.Parallel()
	fg, cp := templateMap(t, "fargate.yaml"), templateMap(t, "control-plane.yaml")
	for name, m := range map[string]map[string]any{"fargate.yaml": fg, "control-plane.yaml": cp} {
		if d := fmt.Sprint(dig(t, m, "Parameters", "TunnelPort", "Default")); d != "443" {
			t.Errorf("%s: TunnelPort defaults to %s, want 443", name, d)
		}
	}
	if d := fmt.Sprint(dig(t, fg, "Parameters", "Decoy", "Default")); d != "true" {
		t.Errorf("Decoy defaults to %s, want true", d)
	}
	c := dig(t, fg, "Resources", "TaskDefinition", "Properties", "ContainerDefinitions", 0)
	start := -1
	for _, sc := range dig(t, c, "SystemControls").([]any) {
		if dig(t, sc, "Namespace") == "net.ipv4.ip_unprivileged_port_start" {
			start, _ = strconv.Atoi(fmt.Sprint(dig(t, sc, "Value")))
		}
	}
	if start < 0 || start > 443 {
		t.Errorf("net.ipv4.ip_unprivileged_port_start = %d, want set, at most 443", start)
	}
	pm := dig(t, c, "PortMappings", 0).(map[string]any)
	if pm["ContainerPort"] != "TunnelPort" || pm["HostPort"] != nil {
		t.Errorf("port mapping %v, want ContainerPort !Ref TunnelPort and no HostPort (awsvpc: the same)", pm)
	}
	env := map[string]any{}
	for _, e := range dig(t, c, "Environment").([]any) {
		env[fmt.Sprint(dig(t, e, "Name"))] = dig(t, e, "Value")
	}
	for k, want := range map[string]string{"FLUIDITY_SERVER_LISTEN_PORT": "TunnelPort", "FLUIDITY_SERVER_DECOY": "Decoy"} {
		if env[k] != want {
			t.Errorf("%s = %v, want !Ref %s", k, env[k], want)
		}
	}
	in := dig(t, fg, "Resources", "SecurityGroup", "Properties", "SecurityGroupIngress").([]any)
	if len(in) != 1 || dig(t, in[0], "FromPort") != "TunnelPort" || dig(t, in[0], "ToPort") != "TunnelPort" {
		t.Errorf("security group ingress %v, want the tunnel port only", in)
	}
	if v := dig(t, cp, "Resources", "WakeFunction", "Properties", "Environment", "Variables", "TUNNEL_PORT"); v != "TunnelPort" {
		t.Errorf("Wake's TUNNEL_PORT = %v, want !Ref TunnelPort", v)
	}
}
