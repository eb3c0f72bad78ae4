package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fluidity-tunnel/fluidity/internal/ec2query"
)

type network struct {
	vpc     string
	subnets []string
}

// network picks the VPC and public subnets as the walk-through does: the
// given ones, or the default VPC's subnets that map public IPs on launch.
// Subnets are sorted, so the same network is the same stack parameter.
func (d *Deployer) network(ctx context.Context) (network, error) {
	n := network{vpc: d.cfg.VpcID, subnets: slices.Clone(d.cfg.SubnetIDs)}
	if n.vpc == "" {
		vpcs, err := d.ec2.VPCIDs(ctx, ec2query.Filter{Name: "isDefault", Values: []string{"true"}})
		if err != nil {
			return n, fmt.Errorf("default vpc: %w", err)
		}
		if len(vpcs) == 0 {
			return n, fmt.Errorf("%w: the region has no default VPC: give a VPC and its public subnets", ErrInvalid)
		}
		n.vpc = vpcs[0]
	}
	if len(n.subnets) == 0 {
		subnets, err := d.ec2.SubnetIDs(ctx,
			ec2query.Filter{Name: "vpc-id", Values: []string{n.vpc}},
			ec2query.Filter{Name: "map-public-ip-on-launch", Values: []string{"true"}})
		if err != nil {
			return n, fmt.Errorf("subnets of %s: %w", n.vpc, err)
		}
		n.subnets = subnets
		if len(n.subnets) == 0 {
			return n, fmt.Errorf("%w: %s has no subnet that maps public IPs on launch: give the public subnets", ErrInvalid, n.vpc)
		}
	}
	slices.Sort(n.subnets)
	d.say("network: %s, subnets %s", n.vpc, strings.Join(n.subnets, ","))
	return n, nil
}
