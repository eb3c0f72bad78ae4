package infra

import _ "embed"

// The templates as committed, for programs that deploy them (fluidity deploy)
// without a source checkout.
var (
	//go:embed fargate.yaml
	FargateTemplate string
	//go:embed control-plane.yaml
	ControlPlaneTemplate string
)
