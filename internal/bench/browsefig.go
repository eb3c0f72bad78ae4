package bench

import (
	"context"
	"fmt"
	"time"
)

// cpuMeter measures the CPU time a path's processes spend between start and
// perThousand, split into client side (pids[0]: agent or ssh) and server
// side (the rest: server or sshd sessions).
type cpuMeter struct {
	pids   []int
	before []time.Duration
	calls  []int64 // read + write system calls, from /proc/PID/io
}

func (m *cpuMeter) start(pids []int) {
	m.pids, m.before, m.calls = pids, make([]time.Duration, len(pids)), make([]int64, len(pids))
	for i, pid := range pids {
		m.before[i], _ = CPUTime(pid)
		m.calls[i], _ = IOCalls(pid)
	}
}

// callsPer returns the read and write system calls per request since start,
// for each side: the write path's coalescing shows in them.
func (m *cpuMeter) callsPer(requests int) (client, server float64) {
	var sides [2]int64
	for i, pid := range m.pids {
		after, _ := IOCalls(pid)
		sides[min(i, 1)] += after - m.calls[i]
	}
	return float64(sides[0]) / float64(max(requests, 1)), float64(sides[1]) / float64(max(requests, 1))
}

// perThousand returns CPU seconds per 1000 requests for each side; NaN-free
// only for a path with processes (ok false otherwise).
func (m *cpuMeter) perThousand(requests int) (client, server float64, ok bool) {
	if len(m.pids) == 0 || requests == 0 {
		return 0, 0, false
	}
	var sides [2]time.Duration
	for i, pid := range m.pids {
		after, _ := CPUTime(pid)
		sides[min(i, 1)] += after - m.before[i]
	}
	k := float64(requests) / 1000
	return sides[0].Seconds() / k, sides[1].Seconds() / k, true
}

// setCPU records a cpuMeter's result under prefix.cpu.client/server.
func (b *Bench) setCPU(prefix string, cpu map[string][2][]float64) {
	for p, sides := range cpu {
		b.set(prefix+".cpu.client", p, Median(sides[0]))
		b.set(prefix+".cpu.server", p, Median(sides[1]))
	}
}

// requestFigure runs a keep-alive request load on every path in rounds and
// records req/s, p50/p99 and CPU per 1000 requests under prefix. The CPU
// time counted is the measured requests' (from the measuring callback on),
// not the warm-up's.
func (b *Bench) requestFigure(ctx context.Context, name, prefix string, load func(p *Path, measuring func()) (float64, []time.Duration, error)) error {
	rps, lats := medians{}, latencies{}
	cpu := map[string][2][]float64{}
	err := b.rounds(ctx, name, b.rig.Paths, func(p *Path) error {
		var m cpuMeter
		pids := p.Procs()
		r, l, err := load(p, func() { m.start(pids) })
		if err != nil {
			return err
		}
		msg := ""
		if c, s, ok := m.perThousand(len(l)); ok {
			sides := cpu[p.Name]
			sides[0], sides[1] = append(sides[0], c), append(sides[1], s)
			cpu[p.Name] = sides
			cc, sc := m.callsPer(len(l))
			msg = fmt.Sprintf("  cpu s/1000 req %.3f + %.3f  read+write syscalls/req %.1f + %.1f", c, s, cc, sc)
		}
		b.cfg.Log("%s: %-8s %7.0f req/s  p50 %.2f ms  p99 %.2f ms%s", name, p.Name, r,
			Ms(Percentile(l, 50)), Ms(Percentile(l, 99)), msg)
		rps.add(p.Name, r)
		lats[p.Name] = append(lats[p.Name], l...)
		return nil
	})
	b.setMedians(prefix+".rps", rps)
	b.setPercentiles(prefix, lats)
	b.setCPU(prefix, cpu)
	return err
}

// tunnelSmall is figure 7: small keep-alive requests inside 64 CONNECT
// tunnels (SOCKS streams for ssh -D), in plain HTTP and in HTTPS.
func (b *Bench) tunnelSmall(ctx context.Context) error {
	t := b.rig.Target
	err := b.requestFigure(ctx, "small in CONNECT", "tun", func(p *Path, measuring func()) (float64, []time.Duration, error) {
		return TunnelLoad(ctx, p, t.Addr, nil, b.sz.SmallConns, b.sz.SmallDur, measuring)
	})
	if err != nil {
		return err
	}
	return b.requestFigure(ctx, "https in CONNECT", "tuntls", func(p *Path, measuring func()) (float64, []time.Duration, error) {
		return TunnelLoad(ctx, p, t.Origins.Addrs[0], t.Origins.ClientConfig(), b.sz.SmallConns, b.sz.SmallDur, measuring)
	})
}

// pageFigure loads the page n times per path and round over paths.
func (b *Bench) pageFigure(ctx context.Context, name, prefix string, paths []*Path, n int) error {
	lats := latencies{}
	cpu := map[string][2][]float64{}
	err := b.rounds(ctx, name, paths, func(p *Path) error {
		var m cpuMeter
		m.start(p.Procs())
		l, err := PageLoads(ctx, p, b.rig.Target.Origins.Addrs, b.rig.Target.Origins.ClientConfig(), n)
		if err != nil {
			return err
		}
		msg := ""
		if c, s, ok := m.perThousand(len(l) * PageRequests); ok {
			sides := cpu[p.Name]
			sides[0], sides[1] = append(sides[0], c), append(sides[1], s)
			cpu[p.Name] = sides
			msg = fmt.Sprintf("  cpu s/1000 req %.3f + %.3f", c, s)
		}
		b.cfg.Log("%s: %-8s p50 %.1f ms  p99 %.1f ms%s", name, p.Name, Ms(Percentile(l, 50)), Ms(Percentile(l, 99)), msg)
		lats[p.Name] = append(lats[p.Name], l...)
		return nil
	})
	b.setPercentiles(prefix, lats)
	b.setCPU(prefix, cpu)
	return err
}

func (b *Bench) pages(ctx context.Context) error {
	return b.pageFigure(ctx, "page load", "page", b.rig.Paths, b.sz.Pages)
}

func (b *Bench) wanPages(ctx context.Context) error {
	paths, err := b.rig.WANPaths(ctx)
	if err != nil {
		return err
	}
	return b.pageFigure(ctx, "wan page load", "wanpage", paths, b.sz.WANPages)
}

// headOfLineMore is figure 9: head-of-line beside an upload, and beside 4
// concurrent downloads.
func (b *Bench) headOfLineMore(ctx context.Context) error {
	for _, v := range []struct {
		prefix string
		bg     Background
	}{{"holup", Background{Upload: true}}, {"hol4", Background{Downloads: 4}}} {
		lats, bulk := latencies{}, medians{}
		name := "head-of-line beside " + v.bg.String()
		err := b.rounds(ctx, name, b.rig.Paths, func(p *Path) error {
			l, mbps, err := HeadOfLineWith(ctx, p, b.rig.Target, b.sz.HOLDur, v.bg)
			if err != nil {
				return err
			}
			b.cfg.Log("%s: %-8s p50 %.2f ms  p99 %.2f ms  bulk %.0f MB/s", name, p.Name,
				Ms(Percentile(l, 50)), Ms(Percentile(l, 99)), mbps)
			lats[p.Name] = append(lats[p.Name], l...)
			bulk.add(p.Name, mbps)
			return nil
		})
		b.setPercentiles(v.prefix, lats)
		b.setMedians(v.prefix+".bulk", bulk)
		if err != nil {
			return err
		}
	}
	return nil
}
