// Command fluidity-bench measures a direct connection, Fluidity and
// `ssh -D` side by side on loopback and prints (and optionally writes) a
// table of the figures from issue 4. Run it from the repository root after
// `make build-host`, or use `make bench`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fluidity-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "", "also write the report as markdown to this file (e.g. BENCHMARKS.md)")
	quick := flag.Bool("quick", false, "smaller transfers and shorter runs (about 2 minutes)")
	only := flag.String("only", "", "run only these figures, e.g. figure1,figure3")
	bin := flag.String("bin", "bin", "directory holding fluidity, fluidity-server and fluidity-agent")
	pathList := flag.String("paths", "direct,fluidity,ssh", "paths to measure (direct, fluidity, ssh)")
	rounds := flag.Int("rounds", 3, "interleaved rounds per figure")
	profile := flag.String("profile", "", "instead of the figures, write CPU and allocation profiles of the agent and server under figure 7's load (64 CONNECT tunnels of small requests) into this directory")
	profileDur := flag.Duration("profile-time", 10*time.Second, "how long -profile runs the load")
	heapProfile := flag.String("heap-profile", "", "run the figures as usual, with the Fluidity daemons writing a heap profile of their highest resident memory into this directory (server.heap.pprof, agent.heap.pprof, wan-agent.heap.pprof and a .txt of runtime figures beside each)")
	profileLoad := flag.String("profile-load", "connect", "the load -profile runs: connect (figure 7's), https (figure 7's with TLS inside the tunnels) or http (figure 3's plain-HTTP forwarding)")
	flag.Parse()
	if *rounds < 1 {
		// The report says how many rounds it took its medians over.
		return fmt.Errorf("-rounds %d: need at least 1", *rounds)
	}

	figures, err := bench.ParseFigures(*only)
	if err != nil {
		return err
	}
	paths := map[string]bool{}
	for _, p := range strings.Split(*pathList, ",") {
		switch strings.TrimSpace(p) {
		case "direct":
			paths[bench.Direct] = true
		case "fluidity":
			paths[bench.Fluidity] = true
		case "ssh", "ssh -D":
			paths[bench.SSH] = true
		case "":
		default:
			return fmt.Errorf("unknown path %q: want direct, fluidity or ssh", p)
		}
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }
	if err := bench.RaiseFileLimit(); err != nil {
		logf("cannot raise the open-file limit: %v", err)
	}

	load := bench.LoadAverage()
	if load > 0.5 {
		logf("warning: load average %.2f before starting; other work on this machine will skew the figures", load)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *profile != "" {
		return runProfile(ctx, *bin, *profile, *profileDur, *profileLoad, logf)
	}
	if *heapProfile != "" {
		if err := os.MkdirAll(*heapProfile, 0o755); err != nil {
			return err
		}
	}
	rig, err := bench.StartRig(ctx, bench.RigOptions{BinDir: *bin, Paths: paths, HeapProfileDir: *heapProfile, Log: logf})
	if err != nil {
		return err
	}
	defer rig.Close()

	cfg := bench.Config{Quick: *quick, Figures: figures, Rounds: *rounds, Log: logf}
	rep, err := bench.Run(ctx, rig, cfg)
	fmt.Println()
	_ = rep.WriteText(os.Stdout) // to the terminal: nothing to do if that fails
	fmt.Println()
	_ = bench.WriteGoalsText(os.Stdout, rep.Goals())
	if err != nil {
		return err // interrupted or broken: do not overwrite the report file
	}
	if *out == "" {
		return nil
	}
	command := strings.Join(append([]string{"go run ./internal/bench/cmd/fluidity-bench"}, os.Args[1:]...), " ")
	m := bench.DescribeMachine(ctx, *bin, command, load)
	kept := bench.KeptSection(*out)
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := bench.WriteDocument(f, rep, m, bench.SizesFor(*quick), *rounds, append(rig.Notes, rep.Notes...)); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(kept); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	logf("wrote %s", *out)
	return nil
}

// runProfile runs the -profile mode: the Fluidity path alone under figure 7's
// load (figure 3's with plain), then stops the daemons so that they write their profiles.
func runProfile(ctx context.Context, bin, dir string, dur time.Duration, kind string, logf func(string, ...any)) error {
	switch kind {
	case bench.ProfileConnect, bench.ProfileHTTPS, bench.ProfileHTTP:
	default:
		return fmt.Errorf("-profile-load %q: want connect, https or http", kind)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rig, err := bench.StartRig(ctx, bench.RigOptions{BinDir: bin, Paths: map[string]bool{bench.Fluidity: true}, ProfileDir: dir, Log: logf})
	if err != nil {
		return err
	}
	n, err := bench.ProfileLoad(ctx, rig, kind, 64, dur)
	rig.Close() // the daemons write their profiles as they stop
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d requests measured in %v (load average %.2f at the end)\n", n, dur, bench.LoadAverage())
	if err := os.WriteFile(filepath.Join(dir, "requests.txt"), []byte(note), 0o644); err != nil {
		return err
	}
	logf("%s", strings.TrimSpace(note))
	logf("profiles in %s: go tool pprof -top %s", dir, filepath.Join(dir, "agent.cpu.pprof"))
	return nil
}
