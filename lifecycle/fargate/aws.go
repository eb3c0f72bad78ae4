package fargate

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwschemas "github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"
	"github.com/rs/zerolog"
)

// NewCloudWatchClient returns a CloudWatch client that speaks the awsJson1_0
// protocol instead of the SDK's default rpc-v2-CBOR. CloudWatch accepts both;
// JSON is also what local emulators (moto) understand, so the client tested
// locally is byte-for-byte the client shipped.
//
// Request compression is off: with the protocol swapped, the SDK labels
// PutMetricData bodies "Content-Encoding: gzip" without compressing them,
// which any receiver rejects, and our payloads are a few hundred bytes.
func NewCloudWatchClient(cfg aws.Config, optFns ...func(*cloudwatch.Options)) *cloudwatch.Client {
	opts := append([]func(*cloudwatch.Options){func(o *cloudwatch.Options) {
		o.Protocol = awsjson.New10(cwschemas.GraniteServiceVersion20100801)
		o.DisableRequestCompression = true
	}}, optFns...)
	return cloudwatch.NewFromConfig(cfg, opts...)
}

// NewFromConfig builds a [Service] for cluster/service from an SDK
// configuration (usually config.LoadDefaultConfig).
func NewFromConfig(awsCfg aws.Config, cfg ServiceConfig, log zerolog.Logger) (*Service, error) {
	return NewService(cfg, ecs.NewFromConfig(awsCfg), ec2.NewFromConfig(awsCfg), log)
}

// NewMetricsReaderFromConfig builds a [MetricsReader] from an SDK configuration.
func NewMetricsReaderFromConfig(awsCfg aws.Config, cfg MetricsConfig) (*MetricsReader, error) {
	return NewMetricsReader(cfg, NewCloudWatchClient(awsCfg))
}

// NewPublisherFromConfig builds a [Publisher] from an SDK configuration.
func NewPublisherFromConfig(awsCfg aws.Config, cfg PublisherConfig, src StatsSource, log zerolog.Logger) (*Publisher, error) {
	return NewPublisher(cfg, NewCloudWatchClient(awsCfg), src, log)
}
