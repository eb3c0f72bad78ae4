// Command bulkab measures bulk transfers through several Fluidity builds side
// by side, alternated round by round, and reports for each transfer the CPU
// seconds per GB of the agent, of the server and of this process (target,
// clients and, over the WAN, the delay proxy), the read+write system calls per
// MB of agent and server, and the peak RSS of both. On a shared machine CPU
// per GB is steadier than MB/s. Build each variant's daemons into its own
// directory first:
//
//	go run ./internal/bench/cmd/bulkab -bins old=/tmp/a,new=/tmp/b -ssh -tls -rounds 5
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bulkab:", err)
		os.Exit(1)
	}
}

// entry is one column: a Fluidity build, or ssh -D.
type entry struct {
	label string
	rig   *bench.Rig
	path  *bench.Path // the loopback path, or over the 40 ms link with -wan
	loop  *bench.Path // the loopback path
}

// sample is one transfer's figures.
type sample struct {
	mbps, client, server, self float64 // MB/s; CPU s/GB
}

func run() error {
	bins := flag.String("bins", "", "label=dir,... : the Fluidity builds to compare (each dir holds fluidity, fluidity-server and fluidity-agent, or agent and server)")
	n := flag.Int64("n", 256<<20, "bytes per transfer")
	rounds := flag.Int("rounds", 3, "rounds; each round runs every column in turn, starting one further along")
	ssh := flag.Bool("ssh", false, "add ssh -D as a column")
	tlsStream := flag.Bool("tls", false, "add one Go TLS 1.3 stream (figure 1's ceiling) to every round")
	wan := flag.Bool("wan", false, "transfer over figure 2's 40 ms link instead of loopback")
	limit := flag.Duration("limit", 0, "stop each transfer after this long (default 60 s on loopback, 6 s over the WAN, as figure 2)")
	dirs := flag.String("dirs", "down,up", "directions, in order; ldown and lup are loopback transfers even with -wan (figure 1 before figure 2, as the full run, whose server serves both: -dirs ldown,lup,down,up)")
	profile := flag.String("profile", "", "write the loopback daemons' CPU and allocation profiles, and every daemon's peak heap profile (heap_profile), into DIR/label/")
	flag.Parse()
	if *bins == "" {
		return fmt.Errorf("-bins is required")
	}
	if *limit == 0 {
		*limit = 60 * time.Second
		if *wan {
			*limit = 6 * time.Second
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "# "+format+"\n", args...) }
	if err := bench.RaiseFileLimit(); err != nil {
		logf("cannot raise the open-file limit: %v", err)
	}

	var es []*entry
	defer func() {
		for _, e := range es {
			e.rig.Close()
		}
	}()
	start := func(label string, opts bench.RigOptions) error {
		opts.Log = logf
		rig, err := bench.StartRig(ctx, opts)
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		e := &entry{label: label, rig: rig, path: rig.Paths[0], loop: rig.Paths[0]}
		es = append(es, e)
		if *wan {
			ps, err := rig.WANPaths(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", label, err)
			}
			e.path = ps[0]
		}
		return nil
	}
	for _, kv := range strings.Split(*bins, ",") {
		label, dir, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-bins: %q is not label=dir", kv)
		}
		opts := bench.RigOptions{BinDir: dir, Paths: map[string]bool{bench.Fluidity: true}}
		if *profile != "" {
			opts.ProfileDir = filepath.Join(*profile, label)
			opts.HeapProfileDir = opts.ProfileDir
			if err := os.MkdirAll(opts.ProfileDir, 0o755); err != nil {
				return err
			}
		}
		if err := start(label, opts); err != nil {
			return err
		}
	}
	if *ssh {
		if err := start("ssh", bench.RigOptions{Paths: map[string]bool{bench.SSH: true}}); err != nil {
			return err
		}
	}

	type key struct{ label, dir string }
	var order []key
	got := map[key][]sample{}
	add := func(k key, s sample) {
		if _, ok := got[k]; !ok {
			order = append(order, k)
		}
		got[k] = append(got[k], s)
	}
	for r := range *rounds {
		for i := range es {
			e := es[(i+r)%len(es)]
			for _, d := range strings.Split(*dirs, ",") {
				s, line, err := measure(ctx, e, d, *n, *limit)
				if err != nil {
					return fmt.Errorf("%s %s: %w", e.label, d, err)
				}
				fmt.Printf("%-6s %-4s %s  load %.2f\n", e.label, d, line, bench.LoadAverage())
				add(key{e.label, d}, s)
			}
		}
		if *tlsStream {
			c0 := selfCPU()
			v, err := bench.TLSStream(ctx, *n)
			if err != nil {
				return fmt.Errorf("tls stream: %w", err)
			}
			self := (selfCPU() - c0).Seconds() / (float64(*n) / 1e9)
			fmt.Printf("%-6s %-4s %7.1f MB/s  this process %5.2f s/GB\n", "tls", "down", v, self)
			add(key{"tls", "down"}, sample{mbps: v, self: self})
		}
	}

	fmt.Printf("\nmedians of %d rounds (CPU s/GB):\n", *rounds)
	slices.SortStableFunc(order, func(a, b key) int { return strings.Compare(a.dir, b.dir) })
	for _, k := range order {
		med := func(f func(sample) float64) float64 {
			var xs []float64
			for _, s := range got[k] {
				xs = append(xs, f(s))
			}
			return bench.Median(xs)
		}
		c, s := med(func(s sample) float64 { return s.client }), med(func(s sample) float64 { return s.server })
		fmt.Printf("%-6s %-4s %7.1f MB/s  client %5.2f  server %5.2f  both %5.2f  this process %5.2f\n",
			k.label, k.dir, med(func(s sample) float64 { return s.mbps }), c, s, c+s, med(func(s sample) float64 { return s.self }))
	}
	return nil
}

// measure runs one transfer in direction d ("down" or "up") through e.
func measure(ctx context.Context, e *entry, d string, n int64, limit time.Duration) (sample, string, error) {
	p := e.path
	if d == "ldown" || d == "lup" {
		p, d = e.loop, d[1:]
	}
	pids := p.Procs() // client side, then server side
	cpu0, calls0 := make([]time.Duration, len(pids)), make([]int64, len(pids))
	for i, pid := range pids {
		cpu0[i], _ = bench.CPUTime(pid)
		calls0[i], _ = bench.IOCalls(pid)
	}
	self0 := selfCPU()
	peak := bench.PeakRSS(p.Procs)
	var t bench.Transfer
	var err error
	switch d {
	case "down":
		t, err = bench.Download(ctx, p, e.rig.Target.Addr, n, limit)
	case "up":
		t, err = bench.Upload(ctx, p, e.rig.Target, n, limit)
	default:
		err = fmt.Errorf("unknown direction %q: want down or up", d)
	}
	rss := peak()
	if err != nil {
		return sample{}, "", err
	}
	if _, err := e.rig.Target.Quiesce(ctx, 5*time.Second); err != nil {
		return sample{}, "", err
	}
	gb := float64(t.Bytes) / 1e9
	cpu := make([]float64, 2)
	var calls []string
	for i, pid := range pids {
		c, _ := bench.CPUTime(pid)
		k, _ := bench.IOCalls(pid)
		if i < len(cpu) {
			cpu[i] = (c - cpu0[i]).Seconds() / gb
		}
		calls = append(calls, fmt.Sprintf("%.0f", float64(k-calls0[i])/(gb*1e3)))
	}
	s := sample{mbps: t.MBps(), client: cpu[0], server: cpu[1], self: (selfCPU() - self0).Seconds() / gb}
	line := fmt.Sprintf("%7.1f MB/s  client %5.2f  server %5.2f  this process %5.2f s/GB  calls/MB %s  peak RSS %5.1f MB",
		s.mbps, s.client, s.server, s.self, strings.Join(calls, "+"), float64(rss)/1e6)
	return s, line, nil
}

func selfCPU() time.Duration {
	c, _ := bench.CPUTime(os.Getpid())
	return c
}
