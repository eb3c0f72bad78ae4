// Command fluidity is the user's small helper for Fluidity: it creates the
// private CA and the certificates the agent and server need, shows the running
// agent's status, wakes the server and puts it to sleep, and reports its
// version. The agent and server themselves are separate programs.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fluidity-tunnel/fluidity/internal/buildinfo"
	"github.com/spf13/pflag"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line was wrong
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usageText = `fluidity — helper for the Fluidity tunnel

Usage:
  fluidity certs [flags]   create the private CA, server and client certificates
  fluidity deploy [flags]  create or update the AWS deployment (--dry-run to preview)
  fluidity destroy [flags] remove the AWS deployment
  fluidity status          show the running agent's tunnel (--json; exit 3 when down)
  fluidity wake            wake the server through the Wake API (--wait: until it runs)
  fluidity sleep           put the server to sleep through the Kill API
  fluidity version         print the version
  fluidity --help          show this help

Run 'fluidity certs --help' for the certificate options, and 'fluidity status
--help' for status, wake and sleep (they read the agent's --config agent.yaml);
'fluidity deploy --help' and 'fluidity destroy --help' for the AWS deployment.
`

// run is main without the process exit, so tests can drive it.
func run(args, environ []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fluidity", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	// Flags after the command belong to the command.
	fs.SetInterspersed(false)
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return exitOK
		}
		return usageError(stderr, "fluidity", err)
	}
	if *showVersion {
		return printVersion(stdout)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch cmd, cmdArgs := rest[0], rest[1:]; cmd {
	case "certs":
		return runCerts(cmdArgs, stdout, stderr)
	case "status", "wake", "sleep":
		return runAgentCmd(cmd, cmdArgs, environ, stdout, stderr)
	case "deploy":
		return runDeploy(cmdArgs, stdout, stderr)
	case "destroy":
		return runDestroy(cmdArgs, stdout, stderr)
	case "version":
		if len(cmdArgs) > 0 {
			return usageError(stderr, "fluidity version", fmt.Errorf("unexpected argument %q", cmdArgs[0]))
		}
		return printVersion(stdout)
	case "help":
		if len(cmdArgs) > 0 && cmdArgs[0] == "certs" {
			return runCerts([]string{"--help"}, stdout, stderr)
		}
		if len(cmdArgs) > 0 && (cmdArgs[0] == "status" || cmdArgs[0] == "wake" || cmdArgs[0] == "sleep") {
			return runAgentCmd(cmdArgs[0], []string{"--help"}, environ, stdout, stderr)
		}
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		return usageError(stderr, "fluidity", fmt.Errorf("unknown command %q", cmd))
	}
}

func printVersion(stdout io.Writer) int {
	fmt.Fprintf(stdout, "fluidity %s\n", buildinfo.String())
	return exitOK
}

// commandFlags is the flag set of subcommand cmd ("fluidity certs", …):
// errors and usage are printed by parseCommand, not by pflag.
func commandFlags(cmd string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseCommand parses a subcommand's arguments, which take no positional
// ones. done reports that the command must return code: after --help
// (usageHead and the flags on stdout, exit 0) or a usage error.
func parseCommand(fs *pflag.FlagSet, args []string, usageHead string, stdout, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, usageHead+fs.FlagUsages())
			return exitOK, true
		}
		return usageError(stderr, fs.Name(), err), true
	}
	if fs.NArg() > 0 {
		return usageError(stderr, fs.Name(), fmt.Errorf("unexpected argument %q", fs.Arg(0))), true
	}
	return 0, false
}

func usageError(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd, err, cmd)
	return exitUsage
}
