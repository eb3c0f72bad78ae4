// Command fluidity-vulndb is the offline half of `make test`'s govulncheck step
// (scripts/vulncheck.sh):
//
//	fluidity-vulndb index -osv DIR -out DIR [-modified RFC3339]
//	    writes a v1 database from the golang.org/x/vulndb module's OSV entries
//	govulncheck -format json ./... | fluidity-vulndb gate -accepted FILE
//	    fails on a called vulnerability the accepted list does not name
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/vulndb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fluidity-vulndb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: fluidity-vulndb index|gate [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "index":
		src := fs.String("osv", "", "directory of OSV entries (the vulndb module's data/osv)")
		dst := fs.String("out", "", "directory to write the database into (replaced)")
		modified := fs.String("modified", "", "RFC 3339 time for entries without one (the module version's time)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *src == "" || *dst == "" {
			return errors.New("index: -osv and -out are required")
		}
		var notBefore time.Time
		if *modified != "" {
			t, err := time.Parse(time.RFC3339, *modified)
			if err != nil {
				return fmt.Errorf("index: -modified: %w", err)
			}
			notBefore = t
		}
		n, err := vulndb.Build(*src, *dst, notBefore)
		if err != nil {
			return err
		}
		fmt.Printf("fluidity-vulndb: %d entries into %s\n", n, *dst)
		return nil
	case "gate":
		list := fs.String("accepted", "", "file of accepted IDs, one \"ID reason\" a line")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		accepted := map[string]string{}
		if *list != "" {
			f, err := os.Open(*list) // #nosec G703 -- the accepted list the script names
			if err != nil {
				return err
			}
			defer func() { _ = f.Close() }()
			if accepted, err = vulndb.ParseAccepted(f); err != nil {
				return err
			}
		}
		return vulndb.Gate(os.Stdin, accepted, os.Stdout)
	default:
		return fmt.Errorf("unknown command %q (index or gate)", args[0])
	}
}
