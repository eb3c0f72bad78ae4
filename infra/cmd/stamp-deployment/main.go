// Command stamp-deployment writes the API definition's hash into a template's
// AWS::ApiGateway::Deployment logical ID (see infra.StampDeployment), so that
// a stack update that changes the API re-creates the Deployment and the stage
// serves the change. `go generate ./infra` runs it on control-plane.yaml.
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/fluidity-tunnel/fluidity/infra"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: stamp-deployment TEMPLATE.yaml...")
		os.Exit(2)
	}
	for _, name := range os.Args[1:] {
		if err := stamp(name); err != nil {
			fmt.Fprintf(os.Stderr, "stamp-deployment: %s: %v\n", name, err)
			os.Exit(1)
		}
	}
}

func stamp(name string) error {
	b, err := os.ReadFile(name) // #nosec G703 -- a template the developer names on the command line
	if err != nil {
		return err
	}
	out, err := infra.StampDeployment(b)
	if err != nil {
		return err
	}
	if bytes.Equal(out, b) {
		return nil
	}
	fi, err := os.Stat(name) // #nosec G703 -- the same template path, named by the developer
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, out, fi.Mode().Perm()); err != nil { // #nosec G703 -- the same template path, named by the developer
		return err
	}
	t, _ := infra.ParseTemplate(out)
	fmt.Printf("%s: Deployment is now %s\n", name, t.WantDeploymentID())
	return nil
}
