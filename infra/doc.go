// Package infra holds the CloudFormation templates and Dockerfiles; its tests
// lint the templates, deploy them to moto and check the Dockerfiles. Its code
// stamps the API definition's hash into control-plane.yaml's Deployment (see
// StampDeployment): run `go generate ./infra` after changing the API.
package infra

//go:generate go run ./cmd/stamp-deployment control-plane.yaml
