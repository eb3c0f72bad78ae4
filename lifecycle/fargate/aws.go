package fargate

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/internal/ec2query"
)

// NewFromConfig builds a [Service] for cluster/service from an SDK
// configuration (usually config.LoadDefaultConfig).
func NewFromConfig(awsCfg aws.Config, cfg ServiceConfig, log zerolog.Logger) (*Service, error) {
	return NewService(cfg, ecs.NewFromConfig(awsCfg), ec2query.New(awsCfg), log)
}
