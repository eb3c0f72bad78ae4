package awstest

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/ec2query"
)

// The EC2 calls of the fixtures go through internal/ec2query's Do, as
// the product's go through its typed calls: the SDK's EC2 client is not
// in the module (minutes of compile time for a handful of calls).

// ec2Call makes action with params (name, value, name, value, ...)
// against moto at endpoint and decodes the answer into out (unless nil);
// an error fails the test.
func ec2Call(ctx context.Context, t testing.TB, endpoint, action string, out any, params ...string) {
	t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	if err := ec2query.New(AWSConfig(endpoint)).Do(ctx, action, v, out); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

// SeedNetwork creates a VPC with cidr and a subnet with subnetCIDR in it,
// and returns their IDs. The VPC has DNS hostnames on, as a Fargate VPC
// has, without which moto cannot create a task's network interface.
func SeedNetwork(t testing.TB, endpoint, cidr, subnetCIDR string) (vpcID, subnetID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var vpc struct {
		ID string `xml:"vpc>vpcId"`
	}
	ec2Call(ctx, t, endpoint, "CreateVpc", &vpc, "CidrBlock", cidr)
	ec2Call(ctx, t, endpoint, "ModifyVpcAttribute", nil, "VpcId", vpc.ID, "EnableDnsHostnames.Value", "true")
	var sub struct {
		ID string `xml:"subnet>subnetId"`
	}
	ec2Call(ctx, t, endpoint, "CreateSubnet", &sub, "VpcId", vpc.ID, "CidrBlock", subnetCIDR)
	if vpc.ID == "" || sub.ID == "" {
		t.Fatalf("seed: moto returned no IDs (vpc %q, subnet %q)", vpc.ID, sub.ID)
	}
	return vpc.ID, sub.ID
}

// seedSecurityGroup creates a security group in vpc and returns its ID.
func seedSecurityGroup(t testing.TB, endpoint, vpcID, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sg struct {
		ID string `xml:"groupId"`
	}
	ec2Call(ctx, t, endpoint, "CreateSecurityGroup", &sg,
		"GroupName", name, "GroupDescription", "fluidity tunnel", "VpcId", vpcID)
	if sg.ID == "" {
		t.Fatal("seed: moto returned no security group ID")
	}
	return sg.ID
}

// associatePublicIP allocates an Elastic IP (publicIP, or one moto picks
// when empty) and associates it with the network interface eni, as
// assignPublicIp does for a Fargate task, and returns the address.
func associatePublicIP(t testing.TB, endpoint, eni, publicIP string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var eip struct {
		PublicIP     string `xml:"publicIp"`
		AllocationID string `xml:"allocationId"`
	}
	params := []string{"Domain", "vpc"}
	if publicIP != "" {
		params = append(params, "Address", publicIP)
	}
	ec2Call(ctx, t, endpoint, "AllocateAddress", &eip, params...)
	ec2Call(ctx, t, endpoint, "AssociateAddress", nil, "AllocationId", eip.AllocationID, "NetworkInterfaceId", eni)
	if eip.PublicIP == "" {
		t.Fatal("seed: moto allocated no address")
	}
	return eip.PublicIP
}
