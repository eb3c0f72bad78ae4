package awstest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// SeedConfig shapes the seeded service. The zero value gives the defaults.
type SeedConfig struct {
	Cluster string // default "fluidity"
	Service string // default "fluidity-server"
	// DesiredCount of the service; default 0 (asleep).
	DesiredCount int32
	// NoTask seeds the service without a running task, for tests that want
	// to see "starting" before calling StartTask themselves.
	NoTask bool
	// PublicIP for the task's Elastic IP; empty lets moto pick one. Use
	// "127.0.0.1" to make Wake report an address a local server listens on.
	PublicIP string
}

// Fargate is a seeded ECS Fargate service in moto.
type Fargate struct {
	Endpoint       string
	Cluster        string
	Service        string
	TaskDefinition string
	Subnet         string
	SecurityGroup  string
	// TaskARN and PublicIP of the seeded task, when there is one.
	TaskARN  string
	PublicIP string
}

// Seed creates a cluster, a Fargate task definition and service, and a RUNNING
// task of that service with a public IP, and returns their description.
//
// moto never starts tasks for a service, so the task is started with RunTask
// in the service's group ("service:<name>", what ECS gives a service's tasks)
// and an Elastic IP is associated with its ENI, as assignPublicIp would do.
func Seed(t testing.TB, endpoint string, cfg SeedConfig) *Fargate {
	t.Helper()
	if cfg.Cluster == "" {
		cfg.Cluster = "fluidity"
	}
	if cfg.Service == "" {
		cfg.Service = "fluidity-server"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ecsc := ecs.NewFromConfig(AWSConfig(endpoint))

	vpc, subnet := SeedNetwork(t, endpoint, "10.42.0.0/16", "10.42.1.0/24")
	sg := seedSecurityGroup(t, endpoint, vpc, cfg.Service+"-sg")
	if _, err := ecsc.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(cfg.Cluster)}); err != nil {
		t.Fatalf("seed: create cluster: %v", err)
	}
	td, err := ecsc.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(cfg.Service),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name:      aws.String("server"),
			Image:     aws.String("fluidity-server:test"),
			Essential: aws.Bool(true),
			// moto needs per-container cpu/memory to place a task.
			Cpu:          256,
			Memory:       aws.Int32(512),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: aws.Int32(8443), Protocol: ecstypes.TransportProtocolTcp}},
		}},
	})
	if err != nil {
		t.Fatalf("seed: register task definition: %v", err)
	}
	f := &Fargate{
		Endpoint: endpoint, Cluster: cfg.Cluster, Service: cfg.Service,
		TaskDefinition: aws.ToString(td.TaskDefinition.TaskDefinitionArn),
		Subnet:         subnet, SecurityGroup: sg,
	}
	_, err = ecsc.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster:        aws.String(cfg.Cluster),
		ServiceName:    aws.String(cfg.Service),
		TaskDefinition: aws.String(f.TaskDefinition),
		DesiredCount:   aws.Int32(cfg.DesiredCount),
		LaunchType:     ecstypes.LaunchTypeFargate,
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets: []string{f.Subnet}, SecurityGroups: []string{f.SecurityGroup}, AssignPublicIp: ecstypes.AssignPublicIpEnabled,
		}},
	})
	if err != nil {
		t.Fatalf("seed: create service: %v", err)
	}
	if !cfg.NoTask {
		f.StartTask(t, cfg.PublicIP)
	}
	return f
}

// StartTask plays the ECS scheduler: it starts a RUNNING task of the service
// and gives its ENI a public IP (publicIP, or one moto picks).
func (f *Fargate) StartTask(t testing.TB, publicIP string) (taskARN, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ecsc := ecs.NewFromConfig(AWSConfig(f.Endpoint))
	run, err := ecsc.RunTask(ctx, &ecs.RunTaskInput{
		Cluster:        aws.String(f.Cluster),
		TaskDefinition: aws.String(f.TaskDefinition),
		LaunchType:     ecstypes.LaunchTypeFargate,
		Group:          aws.String("service:" + f.Service),
		StartedBy:      aws.String("ecs-svc/fixture"),
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets: []string{f.Subnet}, SecurityGroups: []string{f.SecurityGroup}, AssignPublicIp: ecstypes.AssignPublicIpEnabled,
		}},
	})
	if err != nil {
		t.Fatalf("seed: run task: %v", err)
	}
	if len(run.Tasks) != 1 {
		t.Fatalf("seed: run task started %d tasks, failures %+v", len(run.Tasks), run.Failures)
	}
	task := run.Tasks[0]
	var eni string
	for _, a := range task.Attachments {
		for _, d := range a.Details {
			if aws.ToString(d.Name) == "networkInterfaceId" {
				eni = aws.ToString(d.Value)
			}
		}
	}
	if eni == "" {
		t.Fatalf("seed: task %s has no ENI attachment", aws.ToString(task.TaskArn))
	}
	f.TaskARN, f.PublicIP = aws.ToString(task.TaskArn), associatePublicIP(t, f.Endpoint, eni, publicIP)
	return f.TaskARN, f.PublicIP
}
