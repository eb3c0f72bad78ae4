package deploy

// The IAM permissions a deploying user needs, in two parts, which together
// must be exactly the actions of infra/deployer-policy.json (a test compares
// them, and the moto flow test checks that every AWS call deploy and destroy
// make is listed here).

// Calls maps every AWS operation deploy and destroy call themselves, as
// "<SDK service ID>.<operation>", to the IAM actions it needs.
var Calls = map[string][]string{
	"STS.GetCallerIdentity": nil, // allowed to everyone; no policy can deny it

	"CloudFormation.DescribeStacks":      {"cloudformation:DescribeStacks"},
	"CloudFormation.DescribeStackEvents": {"cloudformation:DescribeStackEvents"},
	"CloudFormation.CreateStack":         {"cloudformation:CreateStack"},
	"CloudFormation.CreateChangeSet":     {"cloudformation:CreateChangeSet"},
	"CloudFormation.DescribeChangeSet":   {"cloudformation:DescribeChangeSet"},
	"CloudFormation.ExecuteChangeSet":    {"cloudformation:ExecuteChangeSet"},
	"CloudFormation.DeleteChangeSet":     {"cloudformation:DeleteChangeSet"},
	"CloudFormation.DeleteStack":         {"cloudformation:DeleteStack"},

	"Secrets Manager.DescribeSecret": {"secretsmanager:DescribeSecret"},
	// Tags on creation need TagResource as well.
	"Secrets Manager.CreateSecret":   {"secretsmanager:CreateSecret", "secretsmanager:TagResource"},
	"Secrets Manager.GetSecretValue": {"secretsmanager:GetSecretValue"},
	"Secrets Manager.PutSecretValue": {"secretsmanager:PutSecretValue"},
	"Secrets Manager.DeleteSecret":   {"secretsmanager:DeleteSecret"},

	"ECR.DescribeRepositories":  {"ecr:DescribeRepositories"},
	"ECR.CreateRepository":      {"ecr:CreateRepository", "ecr:TagResource"},
	"ECR.GetAuthorizationToken": {"ecr:GetAuthorizationToken"},
	"ECR.ListTagsForResource":   {"ecr:ListTagsForResource"},
	// With Force, ECR deletes the images on the caller's behalf.
	"ECR.DeleteRepository": {"ecr:DeleteRepository", "ecr:BatchDeleteImage"},

	"S3.HeadBucket":       {"s3:ListBucket"},
	"S3.CreateBucket":     {"s3:CreateBucket"},
	"S3.PutBucketTagging": {"s3:PutBucketTagging"},
	"S3.GetBucketTagging": {"s3:GetBucketTagging"},
	"S3.HeadObject":       {"s3:GetObject"},
	"S3.PutObject":        {"s3:PutObject"},
	"S3.ListObjectsV2":    {"s3:ListBucket"},
	"S3.DeleteObjects":    {"s3:DeleteObject"},
	"S3.DeleteBucket":     {"s3:DeleteBucket"},

	"EC2.DescribeVpcs":    {"ec2:DescribeVpcs"},
	"EC2.DescribeSubnets": {"ec2:DescribeSubnets"},

	"ECS.DescribeServices": {"ecs:DescribeServices"},

	"IAM.ListRoles":               {"iam:ListRoles"},
	"IAM.CreateServiceLinkedRole": {"iam:CreateServiceLinkedRole"},

	"API Gateway.GetApiKey": {"apigateway:GET"},
}

// RegistryActions are what an image push to ECR needs: the registry's own
// HTTP API, not SDK calls, so the flow test cannot record them.
var RegistryActions = []string{
	"ecr:BatchCheckLayerAvailability", // HEAD of each blob
	"ecr:BatchGetImage",               // HEAD of the tag: is it pushed already?
	"ecr:InitiateLayerUpload",
	"ecr:UploadLayerPart",
	"ecr:CompleteLayerUpload",
	"ecr:PutImage",
}

// StackResourceActions are what CloudFormation does with the deploying
// user's own credentials (no service role) for each resource type of the
// two templates, from create through update to delete: the handler
// permissions of each type in the CloudFormation registry, less those only
// needed for properties the templates do not use.
var StackResourceActions = map[string][]string{
	"AWS::ECS::Cluster": {"ecs:CreateCluster", "ecs:DescribeClusters", "ecs:UpdateCluster", "ecs:UpdateClusterSettings", "ecs:DeleteCluster"},
	"AWS::ECS::Service": {"ecs:CreateService", "ecs:DescribeServices", "ecs:UpdateService", "ecs:DeleteService", "iam:PassRole"},
	"AWS::ECS::TaskDefinition": {"ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:DeregisterTaskDefinition",
		"iam:PassRole"},
	"AWS::IAM::Role": {"iam:CreateRole", "iam:GetRole", "iam:DeleteRole", "iam:UpdateAssumeRolePolicy",
		"iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies",
		"iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole"},
	"AWS::Logs::LogGroup": {"logs:CreateLogGroup", "logs:DescribeLogGroups", "logs:PutRetentionPolicy",
		"logs:DeleteRetentionPolicy", "logs:ListTagsForResource", "logs:DeleteLogGroup"},
	"AWS::EC2::SecurityGroup": {"ec2:CreateSecurityGroup", "ec2:DescribeSecurityGroups", "ec2:AuthorizeSecurityGroupIngress",
		"ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
		"ec2:CreateTags", "ec2:DeleteSecurityGroup"},
	"AWS::Lambda::Function": {"lambda:CreateFunction", "lambda:GetFunction", "lambda:UpdateFunctionCode",
		"lambda:UpdateFunctionConfiguration", "lambda:DeleteFunction", "lambda:ListTags",
		"lambda:GetRuntimeManagementConfig", "lambda:GetFunctionCodeSigningConfig", "lambda:GetFunctionRecursionConfig",
		"iam:PassRole", "s3:GetObject"},
	"AWS::Lambda::Permission": {"lambda:AddPermission", "lambda:RemovePermission", "lambda:GetPolicy"},
	// API Gateway's IAM actions are the HTTP methods of its control API.
	"AWS::ApiGateway::RestApi":      {"apigateway:GET", "apigateway:POST", "apigateway:PUT", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::Resource":     {"apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::Method":       {"apigateway:GET", "apigateway:PUT", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::Deployment":   {"apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::Stage":        {"apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::ApiKey":       {"apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::UsagePlan":    {"apigateway:GET", "apigateway:POST", "apigateway:PATCH", "apigateway:DELETE"},
	"AWS::ApiGateway::UsagePlanKey": {"apigateway:GET", "apigateway:POST", "apigateway:DELETE"},
	"AWS::Events::Rule": {"events:PutRule", "events:DescribeRule", "events:DeleteRule",
		"events:PutTargets", "events:RemoveTargets", "events:ListTargetsByRule"},
}
