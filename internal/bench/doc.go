// Package bench is the side-by-side benchmark of issue 4: it starts a local
// HTTP target, the Fluidity server and agent, and sshd with `ssh -D`, then
// measures bulk throughput (on loopback and over a 40 ms toxiproxy link),
// small-request load, new-connection latency, head-of-line blocking, memory
// and CPU for each path, interleaving the paths round by round. The command
// is ./cmd/fluidity-bench (`make bench`).
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// Machine describes where a run happened.
type Machine struct {
	CPU      string
	Cores    int
	Kernel   string
	Go       string
	OpenSSH  string
	Fluidity string
	Date     time.Time
	Command  string
	// Load averages over one minute before the run started and at its end.
	LoadBefore, LoadAfter float64
}

// LoadAverage returns the one-minute load average, or NaN.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return math.NaN()
	}
	return l
}

// DescribeMachine gathers the machine facts for the report; loadBefore is
// LoadAverage from before the run.
func DescribeMachine(ctx context.Context, binDir, command string, loadBefore float64) Machine {
	m := Machine{
		LoadBefore: loadBefore,
		LoadAfter:  LoadAverage(),
		CPU:        "unknown",
		Cores:      runtime.NumCPU(),
		Go:         runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		Date:       time.Now().UTC(),
		Command:    command,
		Fluidity:   "not found",
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	version := func(bin string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		return firstLine(string(out))
	}
	m.OpenSSH = version("ssh", "-V")
	if bins, err := FindFluidity(binDir); err == nil {
		m.Fluidity = version(bins.Agent, "version")
	}
	return m
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// WriteDocument writes BENCHMARKS.md: machine, results table, goals and
// method.
func WriteDocument(w io.Writer, rep *Report, m Machine, sz Sizes, rounds int, notes []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Fluidity benchmarks\n\n")
	fmt.Fprintf(&b, "Direct connection vs Fluidity (agent → mutually authenticated TLS 1.3 + yamux → server) vs "+
		"OpenSSH dynamic forwarding (`ssh -D`), measured side by side in one run on one machine. "+
		"Regenerate with `make bench`.\n\n")
	fmt.Fprintf(&b, "## Machine\n\n")
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n", m.CPU, m.Cores)
	fmt.Fprintf(&b, "- Kernel: Linux %s\n", m.Kernel)
	fmt.Fprintf(&b, "- Go: %s\n", m.Go)
	fmt.Fprintf(&b, "- OpenSSH: %s\n", m.OpenSSH)
	fmt.Fprintf(&b, "- Fluidity: %s\n", m.Fluidity)
	fmt.Fprintf(&b, "- Date: %s\n", m.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Load average (1 min): %.2f before the run, %.2f at its end (the run itself loads the machine; "+
		"a high figure before it means something else was competing for the CPU)\n", m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "- Command: `%s`\n\n", m.Command)
	fmt.Fprintf(&b, "## Results\n\n")
	fmt.Fprintf(&b, "Throughput figures are the median of %d interleaved rounds; latency percentiles pool "+
		"every sample of every round. Ratios divide Fluidity's figure by the other path's; the last column says "+
		"which direction is better.\n\n", rounds)
	if err := rep.WriteMarkdown(&b); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n## Goals\n\n")
	if err := WriteGoalsMarkdown(&b, rep.Goals()); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, "\n## Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\n## Method\n\n")
	for _, line := range []string{
		"Everything runs on 127.0.0.1: an in-process HTTP target (`/small`, `/bulk?n=`, `/sink`), " +
			"`fluidity-server` + `fluidity-agent` (HTTP proxy), and a throwaway `sshd` with `ssh -N -D` (SOCKS5, " +
			"default ciphers, ed25519 keys). Clients use CONNECT (Fluidity) or SOCKS5 (ssh) for streams and the " +
			"agent's plain-HTTP forwarding for `http://` requests.",
		fmt.Sprintf("**1. Bulk**: one stream downloads (GET) and uploads (POST) %s; MB = 10^6 bytes. The ceiling row is one "+
			"in-process Go TLS 1.3 connection over loopback with no tunnel.", size(sz.Bulk)),
		fmt.Sprintf("**2. Bulk over 40 ms RTT**: a toxiproxy latency toxic adds %v each way (%v RTT) between agent and server, "+
			"between ssh and sshd, and in front of the target for direct. Each transfer moves up to %s and stops "+
			"after %v (throughput counts what arrived). Peak RSS is sampled during each path's transfers. "+
			"Fluidity runs its defaults: stream windows auto-tuned up to `stream_window` %d MiB.", WANDelay, 2*WANDelay, size(sz.WANBulk), sz.WANLimit,
			tunnel.DefaultSessionConfig().StreamWindow>>20),
		fmt.Sprintf("**3. Small requests**: %d keep-alive connections issue GET /small for %v after a warm-up "+
			"(Fluidity: plain HTTP through the proxy; ssh: HTTP over SOCKS).", sz.SmallConns, sz.SmallDur),
		fmt.Sprintf("**4. New connection**: sequentially open, one GET /small with `Connection: close`, close; "+
			"%d per round on loopback, %d over the 40 ms link. Plain HTTP is the agent's proxy forwarding; "+
			"direct and ssh -D have one mode, so both rows show it.", sz.NewConns, sz.WANNewConns),
		fmt.Sprintf("**5. Head-of-line**: a bulk download runs through the path while GET /small requests run "+
			"back to back on one other keep-alive stream for %v.", sz.HOLDur),
		fmt.Sprintf("**6. Memory and CPU**: VmRSS and utime+stime from /proc of agent + server (Fluidity) or ssh + "+
			"the sshd session processes (ssh -D); idle after start-up, then with %d idle CONNECT/SOCKS streams "+
			"open (per-stream = growth ÷ %d), then peak RSS and CPU during one %s download plus upload.",
			sz.IdleStreams, sz.IdleStreams, size(sz.Bulk)),
		fmt.Sprintf("**7. Small requests inside CONNECT**: %d CONNECT tunnels (Fluidity) or SOCKS streams (ssh -D), or TCP "+
			"connections (direct), each carrying keep-alive GET /small back to back for %v after a warm-up; then the same "+
			"with TLS 1.3 to the target inside every tunnel (HTTPS keep-alive through CONNECT, as a browser does).",
			sz.SmallConns, sz.SmallDur),
		fmt.Sprintf("**8. Page load**: one page is 1 HTML document (%d KiB) from the first of %d HTTPS origins (local "+
			"TLS 1.3 listeners, one port each), then %d subresources of %d KiB spread evenly over all %d, fetched as a "+
			"browser does over HTTP/1.1: one CONNECT tunnel (SOCKS stream) per origin, each origin's requests one after "+
			"another on it, the origins in parallel. Every load opens its tunnels and TLS connections afresh (TLS "+
			"sessions resumed); %d loads per round on loopback, %d over the 40 ms link (figure 2's, in front of every "+
			"origin for direct). p50/p99 of the whole page's time.",
			PageHTMLBytes>>10, OriginCount, Subresources, SubresourceSize>>10, OriginCount, sz.Pages, sz.WANPages),
		fmt.Sprintf("**9. Head-of-line beside an upload / beside 4 downloads**: as figure 5, with one endless upload "+
			"(POST /sink) or 4 concurrent downloads on their own streams instead of one download; the MB/s row is "+
			"theirs, summed. %v each.", sz.HOLDur),
		"**CPU s per 1000 requests** (figures 3, 7, 8): utime+stime from /proc of the client side (agent, or ssh) and " +
			"of the server side (server, or the sshd session processes) over the measured requests only (not the " +
			"warm-up), divided by their number ÷ 1000 (a page counts as its " + fmt.Sprint(PageRequests) + " requests). " +
			"It shows a cost regression even when an idle machine hides it in throughput.",
		"**Profiles**: `go run ./internal/bench/cmd/fluidity-bench -profile DIR` runs figure 7's plain load through " +
			"Fluidity alone with the daemons' `cpu_profile` and `mem_profile` keys set, and writes `agent.cpu.pprof`, " +
			"`agent.allocs.pprof`, `server.cpu.pprof`, `server.allocs.pprof` and the request count to DIR " +
			"(`go tool pprof -top DIR/agent.cpu.pprof`).",
	} {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// RaiseFileLimit lifts the open-file soft limit to the hard limit, for this
// process and (because it is set explicitly) for the children it starts:
// the idle-stream figure holds thousands of sockets.
func RaiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// KeepMarker starts the part of BENCHMARKS.md that a run does not generate
// (hand-written notes such as the profile summary): a run writing the file
// keeps everything from the marker on.
const KeepMarker = "<!-- kept by make bench: everything below is written by hand -->"

// KeptSection returns the part of the file at path from KeepMarker on,
// preceded by a blank line, or "" when the file or the marker is missing.
func KeptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	i := strings.Index(string(b), KeepMarker)
	if i < 0 {
		return ""
	}
	return "\n" + string(b[i:])
}
