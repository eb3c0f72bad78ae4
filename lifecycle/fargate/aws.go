package fargate

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/rs/zerolog"
)

// NewFromConfig builds a [Service] for cluster/service from an SDK
// configuration (usually config.LoadDefaultConfig).
func NewFromConfig(awsCfg aws.Config, cfg ServiceConfig, log zerolog.Logger) (*Service, error) {
	return NewService(cfg, ecs.NewFromConfig(awsCfg), ec2.NewFromConfig(awsCfg), log)
}
