package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
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
		out, err := d.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{
			Filters: []ec2types.Filter{{Name: aws.String("isDefault"), Values: []string{"true"}}},
		})
		if err != nil {
			return n, fmt.Errorf("default vpc: %w", err)
		}
		if len(out.Vpcs) == 0 {
			return n, fmt.Errorf("%w: the region has no default VPC: give a VPC and its public subnets", ErrInvalid)
		}
		n.vpc = aws.ToString(out.Vpcs[0].VpcId)
	}
	if len(n.subnets) == 0 {
		out, err := d.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: []string{n.vpc}},
			{Name: aws.String("map-public-ip-on-launch"), Values: []string{"true"}},
		}})
		if err != nil {
			return n, fmt.Errorf("subnets of %s: %w", n.vpc, err)
		}
		for _, s := range out.Subnets {
			n.subnets = append(n.subnets, aws.ToString(s.SubnetId))
		}
		if len(n.subnets) == 0 {
			return n, fmt.Errorf("%w: %s has no subnet that maps public IPs on launch: give the public subnets", ErrInvalid, n.vpc)
		}
	}
	slices.Sort(n.subnets)
	d.say("network: %s, subnets %s", n.vpc, strings.Join(n.subnets, ","))
	return n, nil
}
