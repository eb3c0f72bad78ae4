package handler

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle/fargate"
)

// Env is what every Lambda main needs: its configuration, logger, AWS settings and
// the ECS service it drives.
type Env struct {
	Config  Config
	Log     zerolog.Logger
	AWS     aws.Config
	Service *fargate.Service
}

// Bootstrap reads the environment (through getenv) and builds the Env of the
// Lambda named function. The error names what is wrong; the caller exits.
func Bootstrap(function string, getenv func(string) string, logOut io.Writer) (Env, error) {
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		return Env{Log: NewLogger(logOut, function, zerolog.InfoLevel)}, fmt.Errorf("configuration: %w", err)
	}
	log := NewLogger(logOut, function, cfg.LogLevel)
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		return Env{Log: log}, fmt.Errorf("aws configuration: %w", err)
	}
	svc, err := fargate.NewFromConfig(awsCfg, fargate.ServiceConfig{Cluster: cfg.Cluster, Service: cfg.Service}, log)
	if err != nil {
		return Env{Log: log}, fmt.Errorf("ecs service: %w", err)
	}
	return Env{Config: cfg, Log: log, AWS: awsCfg, Service: svc}, nil
}
