package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Config is what one benchmark run measures.
type Config struct {
	Quick   bool
	Figures map[int]bool // figures 1..LastFigure to run; empty means all
	Rounds  int          // interleaved rounds per figure; 0 means 3
	Log     func(format string, args ...any)
}

// Sizes are the amounts each figure moves or runs for.
type Sizes struct {
	Bulk        int64         // bytes per loopback bulk transfer
	BulkLimit   time.Duration // cap on one loopback bulk transfer
	WANBulk     int64         // bytes per WAN bulk transfer
	WANLimit    time.Duration // cap on one WAN bulk transfer
	SmallConns  int
	SmallDur    time.Duration
	NewConns    int // per path, variant and round on loopback
	WANNewConns int // per path, variant and round over the WAN
	HOLDur      time.Duration
	IdleStreams int
	Pages       int // page loads per path and round on loopback
	WANPages    int // page loads per path and round over the WAN
}

// SizesFor returns the default or -quick sizes.
func SizesFor(quick bool) Sizes {
	if quick {
		return Sizes{
			Bulk: 256 << 20, BulkLimit: 20 * time.Second,
			WANBulk: 256 << 20, WANLimit: 3 * time.Second,
			SmallConns: 64, SmallDur: 1500 * time.Millisecond,
			NewConns: 100, WANNewConns: 8,
			HOLDur: 1500 * time.Millisecond, IdleStreams: 1000,
			Pages: 20, WANPages: 5,
		}
	}
	return Sizes{
		Bulk: 1 << 30, BulkLimit: 30 * time.Second,
		WANBulk: 1 << 30, WANLimit: 6 * time.Second,
		SmallConns: 64, SmallDur: 4 * time.Second,
		NewConns: 300, WANNewConns: 20,
		HOLDur: 4 * time.Second, IdleStreams: 1000,
		Pages: 60, WANPages: 15,
	}
}

// figure row definitions, in table order.
type rowDef struct {
	fig            int
	key            string
	figure, metric string
	higher         bool
}

const (
	figBulk    = "1. Bulk, loopback"
	figWAN     = "2. Bulk, 40 ms RTT"
	figSmall   = "3. Small requests, c=64"
	figNew     = "4. New connection, loopback"
	figNewWAN  = "4. New connection, 40 ms RTT"
	figHOL     = "5. Head-of-line"
	figMem     = "6. Memory and CPU"
	figTun     = "7. Small requests inside CONNECT, c=64"
	figTunTLS  = "7. HTTPS inside CONNECT, c=64"
	figPage    = "8. Page load, loopback"
	figPageWAN = "8. Page load, 40 ms RTT"
	figHOLUp   = "9. Head-of-line beside an upload"
	figHOL4    = "9. Head-of-line beside 4 downloads"
	cpuClient  = "CPU s per 1000 requests, agent / ssh"
	cpuServer  = "CPU s per 1000 requests, server / sshd"
	plainLabel = "plain HTTP"
	tunLabel   = "CONNECT/SOCKS"
)

var rowDefs = []rowDef{
	{1, "bulk.down", figBulk, "download MB/s", true},
	{1, "bulk.up", figBulk, "upload MB/s", true},
	{1, "bulk.tls", figBulk, "one Go TLS 1.3 stream, no tunnel (ceiling) MB/s", true},
	{1, "bulk.down.tls", figBulk, "download ÷ TLS stream", true},
	{2, "wan.down", figWAN, "download MB/s", true},
	{2, "wan.up", figWAN, "upload MB/s", true},
	{2, "wan.peak", figWAN, "peak RSS MB during these transfers (both sides)", false},
	{3, "small.rps", figSmall, "requests/s", true},
	{3, "small.p50", figSmall, "p50 ms", false},
	{3, "small.p99", figSmall, "p99 ms", false},
	{3, "small.cpu.client", figSmall, cpuClient, false},
	{3, "small.cpu.server", figSmall, cpuServer, false},
	{4, "new.http.p50", figNew, plainLabel + " p50 ms", false},
	{4, "new.http.p99", figNew, plainLabel + " p99 ms", false},
	{4, "new.connect.p50", figNew, tunLabel + " p50 ms", false},
	{4, "new.connect.p99", figNew, tunLabel + " p99 ms", false},
	{4, "wan.newhttp.p50", figNewWAN, plainLabel + " p50 ms", false},
	{4, "wan.newhttp.p99", figNewWAN, plainLabel + " p99 ms", false},
	{4, "wan.newhttp.rtt", figNewWAN, plainLabel + " p50 RTTs", false},
	{4, "wan.newconnect.p50", figNewWAN, tunLabel + " p50 ms", false},
	{4, "wan.newconnect.p99", figNewWAN, tunLabel + " p99 ms", false},
	{4, "wan.newconnect.rtt", figNewWAN, tunLabel + " p50 RTTs", false},
	{5, "hol.p50", figHOL, "small request p50 ms during bulk", false},
	{5, "hol.p99", figHOL, "small request p99 ms during bulk", false},
	{5, "hol.bulk", figHOL, "bulk MB/s meanwhile", true},
	{6, "mem.agent.idle", figMem, "idle RSS MB, client side (agent / ssh)", false},
	{6, "mem.server.idle", figMem, "idle RSS MB, server side (server / sshd sessions)", false},
	{6, "mem.streams", figMem, "RSS MB with 1,000 idle streams (both sides)", false},
	{6, "mem.stream", figMem, "RSS KiB per idle stream", false},
	{6, "mem.peak", figMem, "peak RSS MB during bulk (both sides)", false},
	{6, "cpu.gb", figMem, "CPU seconds per GB moved (both sides)", false},
	{7, "tun.rps", figTun, "requests/s", true},
	{7, "tun.p50", figTun, "p50 ms", false},
	{7, "tun.p99", figTun, "p99 ms", false},
	{7, "tun.cpu.client", figTun, cpuClient, false},
	{7, "tun.cpu.server", figTun, cpuServer, false},
	{7, "tuntls.rps", figTunTLS, "requests/s", true},
	{7, "tuntls.p50", figTunTLS, "p50 ms", false},
	{7, "tuntls.p99", figTunTLS, "p99 ms", false},
	{7, "tuntls.cpu.client", figTunTLS, cpuClient, false},
	{7, "tuntls.cpu.server", figTunTLS, cpuServer, false},
	{8, "page.p50", figPage, "page p50 ms", false},
	{8, "page.p99", figPage, "page p99 ms", false},
	{8, "page.cpu.client", figPage, cpuClient, false},
	{8, "page.cpu.server", figPage, cpuServer, false},
	{8, "wanpage.p50", figPageWAN, "page p50 ms", false},
	{8, "wanpage.p99", figPageWAN, "page p99 ms", false},
	{8, "wanpage.cpu.client", figPageWAN, cpuClient, false},
	{8, "wanpage.cpu.server", figPageWAN, cpuServer, false},
	{9, "holup.p50", figHOLUp, "small request p50 ms", false},
	{9, "holup.p99", figHOLUp, "small request p99 ms", false},
	{9, "holup.bulk", figHOLUp, "upload MB/s meanwhile", true},
	{9, "hol4.p50", figHOL4, "small request p50 ms", false},
	{9, "hol4.p99", figHOL4, "small request p99 ms", false},
	{9, "hol4.bulk", figHOL4, "download MB/s meanwhile (sum)", true},
}

// LastFigure is the highest figure number.
const LastFigure = 9

// Bench runs the figures against a rig.
type Bench struct {
	cfg Config
	sz  Sizes
	rig *Rig
	rep *Report

	open      int64            // target transfers left open by earlier measurements
	leaks     map[string]int64 // "figure: path" → transfers it left open
	leakOrder []string
}

// Run measures the selected figures and returns the report. Figure errors
// for one path are logged and leave that cell empty; a cancelled ctx stops
// the run.
func Run(ctx context.Context, rig *Rig, cfg Config) (*Report, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	b := &Bench{cfg: cfg, sz: SizesFor(cfg.Quick), rig: rig, rep: &Report{}, leaks: map[string]int64{}}
	defer b.leakNotes()
	for _, d := range rowDefs {
		if b.want(d.fig) {
			b.rep.Add(d.key, d.figure, d.metric, d.higher)
		}
	}
	// Memory first, while the processes are fresh and before the WAN paths
	// add sessions; the WAN figures last.
	steps := []struct {
		fig int
		fn  func(context.Context) error
	}{
		{6, b.memory}, {1, b.bulk}, {3, b.small}, {7, b.tunnelSmall}, {8, b.pages}, {4, b.newConn},
		{5, b.headOfLine}, {9, b.headOfLineMore},
		{2, b.wanBulk}, {4, b.wanNewConn}, {8, b.wanPages},
	}
	for _, s := range steps {
		if !b.want(s.fig) {
			continue
		}
		if err := s.fn(ctx); err != nil {
			return b.rep, err
		}
	}
	return b.rep, ctx.Err()
}

func (b *Bench) want(fig int) bool { return len(b.cfg.Figures) == 0 || b.cfg.Figures[fig] }

func (b *Bench) set(key, path string, v float64) {
	if r := b.rep.Row(key); r != nil && !math.IsNaN(v) {
		r.Values[path] = v
	}
}

// rounds calls fn for every path, cfg.Rounds times, rotating which path goes
// first each round. A path's error is logged and that path sits out the
// rest of the figure.
func (b *Bench) rounds(ctx context.Context, name string, paths []*Path, fn func(p *Path) error) error {
	failed := map[string]bool{}
	for r := range b.cfg.Rounds {
		for i := range paths {
			p := paths[(i+r)%len(paths)]
			if failed[p.Name] {
				continue
			}
			err := fn(p)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				b.cfg.Log("%s: %s: %v", name, p.Name, err)
				failed[p.Name] = true
			}
			b.quiesce(ctx, name, p)
		}
	}
	return ctx.Err()
}

// quiesce waits for the target to settle after p ran, and counts target
// transfers p left open after its client closed them.
func (b *Bench) quiesce(ctx context.Context, figure string, p *Path) {
	open, err := b.rig.Target.Quiesce(ctx, 5*time.Second)
	if err != nil && ctx.Err() == nil {
		b.cfg.Log("%s: after %s: %v", figure, p.Name, err)
	}
	if open > b.open {
		key := figure + ": " + p.Name
		if b.leaks[key] == 0 {
			b.leakOrder = append(b.leakOrder, key)
		}
		b.leaks[key] += open - b.open
		b.cfg.Log("%s: %s left %d target transfer(s) open", figure, p.Name, open-b.open)
		b.open = open
	}
}

// leakNotes turns the leak counts into report notes.
func (b *Bench) leakNotes() {
	for _, k := range b.leakOrder {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf(
			"%s left %d target transfer(s) open after the client closed its connection mid-transfer (stalled, not moving data, so later figures are unaffected).",
			k, b.leaks[k]))
	}
}

// medians collects per-path samples and reduces them to medians.
type medians map[string][]float64

func (m medians) add(path string, v float64) { m[path] = append(m[path], v) }

func (b *Bench) setMedians(key string, m medians) {
	for p, xs := range m {
		b.set(key, p, Median(xs))
	}
}

// latencies pools per-path samples across rounds.
type latencies map[string][]time.Duration

func (b *Bench) setPercentiles(prefix string, l latencies) {
	for p, ds := range l {
		b.set(prefix+".p50", p, Ms(Percentile(ds, 50)))
		b.set(prefix+".p99", p, Ms(Percentile(ds, 99)))
	}
}

func (b *Bench) bulk(ctx context.Context) error {
	t := b.rig.Target
	down, up := medians{}, medians{}
	// The TLS ceiling takes its turn in every round like a path, so that
	// load from elsewhere on the machine hits it alike.
	ceiling := &Path{Name: "one TLS stream"}
	paths := append(append([]*Path(nil), b.rig.Paths...), ceiling)
	var tls []float64
	err := b.rounds(ctx, "bulk", paths, func(p *Path) error {
		if p == ceiling {
			v, err := TLSStream(ctx, b.sz.Bulk)
			if err != nil {
				return err
			}
			b.cfg.Log("bulk: one Go TLS 1.3 stream %.0f MB/s", v)
			tls = append(tls, v)
			return nil
		}
		d, err := Download(ctx, p, t.Addr, b.sz.Bulk, b.sz.BulkLimit)
		if err != nil {
			return err
		}
		u, err := Upload(ctx, p, t, b.sz.Bulk, b.sz.BulkLimit)
		if err != nil {
			return err
		}
		b.cfg.Log("bulk: %-8s down %7.0f MB/s  up %7.0f MB/s", p.Name, d.MBps(), u.MBps())
		down.add(p.Name, d.MBps())
		up.add(p.Name, u.MBps())
		return nil
	})
	b.setMedians("bulk.down", down)
	b.setMedians("bulk.up", up)
	b.set("bulk.tls", Direct, Median(tls))
	for p, xs := range down {
		b.set("bulk.down.tls", p, Ratio(Median(xs), Median(tls)))
	}
	return err
}

func (b *Bench) wanBulk(ctx context.Context) error {
	paths, err := b.rig.WANPaths(ctx)
	if err != nil {
		return err
	}
	t := b.rig.Target
	down, up, peak := medians{}, medians{}, medians{}
	err = b.rounds(ctx, "wan bulk", paths, func(p *Path) error {
		stop := PeakRSS(p.Procs)
		d, err := Download(ctx, p, t.Addr, b.sz.WANBulk, b.sz.WANLimit)
		if err != nil {
			stop()
			return err
		}
		u, err := Upload(ctx, p, t, b.sz.WANBulk, b.sz.WANLimit)
		rss := stop()
		if err != nil {
			return err
		}
		b.cfg.Log("wan bulk: %-8s down %7.1f MB/s  up %7.1f MB/s  peak RSS %.0f MB", p.Name, d.MBps(), u.MBps(), float64(rss)/mb)
		down.add(p.Name, d.MBps())
		up.add(p.Name, u.MBps())
		if rss > 0 {
			peak.add(p.Name, float64(rss)/mb)
		}
		return nil
	})
	for key, m := range map[string]medians{"wan.down": down, "wan.up": up, "wan.peak": peak} {
		b.setMedians(key, m)
	}
	return err
}

// PeakRSS samples the summed RSS of procs() until the returned function is
// called, which returns the highest sample (0 for a path without processes).
func PeakRSS(procs func() []int) func() int64 {
	var peak int64
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, SumRSS(procs()))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-sampled
		return peak
	}
}

func (b *Bench) small(ctx context.Context) error {
	return b.requestFigure(ctx, "small", "small", func(p *Path, measuring func()) (float64, []time.Duration, error) {
		return SmallLoad(ctx, p, b.rig.Target.Addr, b.sz.SmallConns, b.sz.SmallDur, measuring)
	})
}

// newConnections measures both variants; for paths without a plain HTTP
// proxy mode (direct, ssh -D) the two are the same, so it is measured once.
func (b *Bench) newConnections(ctx context.Context, name string, paths []*Path, n int) (plain, tunnel latencies, err error) {
	plain, tunnel = latencies{}, latencies{}
	err = b.rounds(ctx, name, paths, func(p *Path) error {
		t, err := NewConns(ctx, p, b.rig.Target.Addr, false, n)
		if err != nil {
			return err
		}
		h := t
		if p.ProxyAddr != "" {
			if h, err = NewConns(ctx, p, b.rig.Target.Addr, true, n); err != nil {
				return err
			}
		}
		b.cfg.Log("%s: %-8s %s p50 %.2f ms, %s p50 %.2f ms", name, p.Name,
			plainLabel, Ms(Percentile(h, 50)), tunLabel, Ms(Percentile(t, 50)))
		plain[p.Name] = append(plain[p.Name], h...)
		tunnel[p.Name] = append(tunnel[p.Name], t...)
		return nil
	})
	return plain, tunnel, err
}

func (b *Bench) newConn(ctx context.Context) error {
	plain, tunnel, err := b.newConnections(ctx, "new conn", b.rig.Paths, b.sz.NewConns)
	b.setPercentiles("new.http", plain)
	b.setPercentiles("new.connect", tunnel)
	return err
}

func (b *Bench) wanNewConn(ctx context.Context) error {
	paths, err := b.rig.WANPaths(ctx)
	if err != nil {
		return err
	}
	plain, tunnel, err := b.newConnections(ctx, "wan new conn", paths, b.sz.WANNewConns)
	b.setPercentiles("wan.newhttp", plain)
	b.setPercentiles("wan.newconnect", tunnel)
	rtt := 2 * WANDelay
	for p, ds := range plain {
		b.set("wan.newhttp.rtt", p, float64(Percentile(ds, 50))/float64(rtt))
	}
	for p, ds := range tunnel {
		b.set("wan.newconnect.rtt", p, float64(Percentile(ds, 50))/float64(rtt))
	}
	return err
}

func (b *Bench) headOfLine(ctx context.Context) error {
	lats, bulk := latencies{}, medians{}
	err := b.rounds(ctx, "head-of-line", b.rig.Paths, func(p *Path) error {
		l, mbps, err := HeadOfLine(ctx, p, b.rig.Target, b.sz.HOLDur)
		if err != nil {
			return err
		}
		b.cfg.Log("head-of-line: %-8s p50 %.2f ms  p99 %.2f ms  bulk %.0f MB/s", p.Name,
			Ms(Percentile(l, 50)), Ms(Percentile(l, 99)), mbps)
		lats[p.Name] = append(lats[p.Name], l...)
		bulk.add(p.Name, mbps)
		return nil
	})
	b.setPercentiles("hol", lats)
	b.setMedians("hol.bulk", bulk)
	return err
}

const mb = 1e6

func (b *Bench) memory(ctx context.Context) error {
	for _, p := range b.rig.Paths {
		pids := p.Procs()
		if len(pids) == 0 {
			continue
		}
		if err := b.memoryOf(ctx, p, pids); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.cfg.Log("memory: %s: %v", p.Name, err)
		}
	}
	return ctx.Err()
}

// memoryOf measures one tunnel path. pids[0] is the client side (agent or
// ssh), the rest the server side.
func (b *Bench) memoryOf(ctx context.Context, p *Path, pids []int) error {
	client, err := RSS(pids[0])
	if err != nil {
		return err
	}
	server := SumRSS(pids[1:])
	b.set("mem.agent.idle", p.Name, float64(client)/mb)
	b.set("mem.server.idle", p.Name, float64(server)/mb)

	before := SumRSS(pids)
	conns, err := IdleStreams(ctx, p, b.rig.Target.Addr, b.sz.IdleStreams)
	if err != nil {
		return fmt.Errorf("%d idle streams: %w", b.sz.IdleStreams, err)
	}
	time.Sleep(500 * time.Millisecond) // let both sides finish setting up
	with := SumRSS(p.Procs())
	CloseAll(conns)
	perStream := float64(with-before) / float64(b.sz.IdleStreams) / 1024
	b.set("mem.streams", p.Name, float64(with)/mb)
	b.set("mem.stream", p.Name, perStream)
	b.cfg.Log("memory: %-8s idle %.1f + %.1f MB, %d streams %.1f MB (%.1f KiB each)", p.Name,
		float64(client)/mb, float64(server)/mb, b.sz.IdleStreams, float64(with)/mb, perStream)

	// Peak RSS and CPU while moving bulk data both ways.
	time.Sleep(500 * time.Millisecond) // let the streams close
	stopSampling := PeakRSS(p.Procs)
	cpu0 := SumCPU(p.Procs())
	d, err := Download(ctx, p, b.rig.Target.Addr, b.sz.Bulk, b.sz.BulkLimit)
	var u Transfer
	if err == nil {
		u, err = Upload(ctx, p, b.rig.Target, b.sz.Bulk, b.sz.BulkLimit)
	}
	cpu := SumCPU(p.Procs()) - cpu0
	peak := stopSampling()
	b.quiesce(ctx, "memory", p)
	if err != nil {
		return err
	}
	gb := float64(d.Bytes+u.Bytes) / 1e9
	b.set("mem.peak", p.Name, float64(peak)/mb)
	b.set("cpu.gb", p.Name, cpu.Seconds()/gb)
	b.cfg.Log("memory: %-8s peak %.1f MB during bulk, %.2f CPU s/GB", p.Name, float64(peak)/mb, cpu.Seconds()/gb)
	return nil
}

// ParseFigures turns a list like "figure1,figure3" (or "1,3") into figure
// numbers. An empty list means every figure.
func ParseFigures(s string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(strings.ToLower(f), "figure"))
		if err != nil || n < 1 || n > LastFigure {
			return nil, fmt.Errorf("bad figure %q: want figure1 … figure%d", f, LastFigure)
		}
		out[n] = true
	}
	return out, nil
}
