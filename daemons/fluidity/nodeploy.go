//go:build fluidity_nodeploy

package main

import (
	"fmt"
	"io"
)

// A fluidity built with -tags fluidity_nodeploy has everything but deploy and
// destroy, and so links no AWS SDK: `make run` builds it for `fluidity certs`,
// since the SDK's CloudFormation, EC2, S3 and other clients would make a first
// `make run` compile for minutes.

func runDeploy(_ []string, _, stderr io.Writer) int  { return noDeploy("deploy", stderr) }
func runDestroy(_ []string, _, stderr io.Writer) int { return noDeploy("destroy", stderr) }

func noDeploy(cmd string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "fluidity %s: this fluidity was built without deploy and destroy (make run builds it so, to start fast); use the full one: make build-host, then bin/fluidity %s\n", cmd, cmd)
	return exitError
}
