package proxy

import "github.com/fluidity-tunnel/fluidity/tunnel"

// allowLoopback opens the server's egress policy to the tests' local targets.
func allowLoopback(c *tunnel.ServerConfig) {
	c.Egress.AllowCIDRs = []string{"127.0.0.0/8", "::1/128"}
}
