package main

import "github.com/fluidity-tunnel/fluidity/tunnel"

// applyEgress copies the egress settings into the tunnel server's config.
func applyEgress(scfg *tunnel.ServerConfig, cfg Config) {
	scfg.Egress = tunnel.EgressConfig{
		AllowCIDRs: cfg.AllowCIDRs,
		DenyCIDRs:  cfg.DenyCIDRs,
		AllowHosts: cfg.AllowHosts,
		DenyHosts:  cfg.DenyHosts,
	}
}
