// Command fluidity-crosscheck type-checks packages for other platforms
// without compiling them (package crosscheck); `make test` runs it through
// scripts/crosscheck.sh:
//
//	fluidity-crosscheck -platforms 'darwin/arm64 windows/amd64' ./daemons/...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/crosscheck"
	"github.com/fluidity-tunnel/fluidity/internal/platform"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fluidity-crosscheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("fluidity-crosscheck", flag.ContinueOnError)
	list := fs.String("platforms", "", "space-separated GOOS/GOARCH pairs to check for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list == "" || fs.NArg() == 0 {
		return errors.New("usage: fluidity-crosscheck -platforms 'GOOS/GOARCH ...' PATTERN [PATTERN ...]")
	}
	var platforms []platform.Platform
	for _, s := range strings.Fields(*list) {
		p, err := platform.Parse(s)
		if err != nil {
			return err
		}
		platforms = append(platforms, p)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	errs := make([]error, len(platforms))
	var wg sync.WaitGroup
	for i, p := range platforms {
		wg.Go(func() {
			start := time.Now()
			errs[i] = crosscheck.Check(ctx, ".", p, fs.Args()...)
			if errs[i] == nil {
				fmt.Printf("type-checked %s for %s (%.1fs)\n", strings.Join(fs.Args(), " "), p, time.Since(start).Seconds())
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
