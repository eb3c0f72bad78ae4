// Package lambdas holds the control plane's AWS Lambdas: wake, sleep and kill
// are thin mains over internal/handler. Build each as "bootstrap":
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags lambda.norpc -trimpath -o bootstrap ./lambdas/wake
//
// The tests in this directory run the built binaries under the AWS Lambda
// Runtime Interface Emulator against moto, with the payloads in testdata/.
package lambdas
