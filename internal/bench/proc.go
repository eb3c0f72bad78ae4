package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/testbin"
)

// Proc is a child process started by the harness. Stop ends it and
// everything it forked.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	out  *tail
}

// StartProc starts bin in its own process group. Its output is kept (the last
// few KiB) for error messages. The child is killed if the harness dies.
func StartProc(name, bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := &tail{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), out: out}
	go func() { _ = cmd.Wait(); close(p.done) }() // callers ask Exited; the status of a killed bench process is noise
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns the tail of the process's stdout and stderr.
func (p *Proc) Output() string { return p.out.String() }

// Stop terminates the process, its group and its descendants: SIGTERM, then
// SIGKILL after a grace period.
func (p *Proc) Stop() {
	if p == nil || p.Exited() {
		return
	}
	pids := append(Descendants(p.Pid()), p.Pid())
	sig := func(s syscall.Signal) {
		_ = syscall.Kill(-p.Pid(), s)
		for _, pid := range pids {
			_ = syscall.Kill(pid, s)
		}
	}
	sig(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
	}
	sig(syscall.SIGKILL)
	<-p.done
}

// tail is an io.Writer keeping the last max bytes written.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) { return testbin.FreePort() }

// RSS returns the resident set size of pid in bytes (VmRSS).
func RSS(pid int) (int64, error) { return testbin.ProcStatusBytes(pid, "VmRSS") }

// procStat returns the fields of /proc/PID/stat after the command name, so
// that index 0 is field 3 (state) of proc(5).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("bad stat for pid %d", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

// CPUTime returns user + system CPU time consumed by pid.
func CPUTime(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat for pid %d", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad stat for pid %d", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

// Descendants returns every live process below pid.
func Descendants(pid int) []int {
	parent := map[int]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := procStat(p)
		if err != nil || len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1]) // field 4, ppid
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// SumRSS adds up the RSS of pids, skipping ones that vanished.
func SumRSS(pids []int) int64 {
	var n int64
	for _, p := range pids {
		if r, err := RSS(p); err == nil {
			n += r
		}
	}
	return n
}

// SumCPU adds up the CPU time of pids, skipping ones that vanished.
func SumCPU(pids []int) time.Duration {
	var n time.Duration
	for _, p := range pids {
		if c, err := CPUTime(p); err == nil {
			n += c
		}
	}
	return n
}

// IOCalls returns the read and write system calls pid has made (syscr +
// syscw of /proc/PID/io).
func IOCalls(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad io for pid %d: %w", pid, err)
			}
			n += c
		}
	}
	return n, nil
}
