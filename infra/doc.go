// Package infra holds the CloudFormation templates and Dockerfiles; its tests
// lint the templates, deploy them to moto and check the Dockerfiles.
package infra
