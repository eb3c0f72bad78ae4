package testbin

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsPrefix starts the name of every namespace these helpers make; the pid
// that follows lets a later run remove what a killed run left behind.
const netnsPrefix = "fluidity-"

var netnsSeq atomic.Int64

// NewNetns creates a namespace, named after role and unique to this process,
// with its loopback up; Cleanup deletes it (and with it its veth ends).
// Namespaces of test processes that are gone are removed first.
func NewNetns(t testing.TB, role string) *Netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2 (ip) is required for the network-namespace tests (scripts/ci-deps.sh installs it): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the network-namespace tests need root (CI runs as root)")
	}
	removeStaleNetns()
	n := &Netns{Name: fmt.Sprintf("%s%d-%d-%s", netnsPrefix, os.Getpid(), netnsSeq.Add(1), role)}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", n.Name, err, out)
		}
		_ = os.RemoveAll(filepath.Join("/etc/netns", n.Name))
	})
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// removeStaleNetns deletes namespaces these helpers made in processes that no
// longer exist (a run killed before its Cleanup).
func removeStaleNetns() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			_ = exec.Command("ip", "netns", "delete", e.Name()).Run()
			_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
		}
	}
}

// IP runs `ip ARGS` inside the namespace, failing the test on error.
func (n *Netns) IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Link joins n and peer with a veth pair: n's end is named ifname and has
// addr (CIDR form, e.g. 10.1.0.1/24); peer's is peerIfname with peerAddr.
// Only the link's own subnet is routed: nothing is forwarded beyond it.
func (n *Netns) Link(t testing.TB, ifname, addr string, peer *Netns, peerIfname, peerAddr string) {
	t.Helper()
	n.IP(t, "link", "add", ifname, "type", "veth", "peer", "name", peerIfname, "netns", peer.Name)
	n.IP(t, "addr", "add", addr, "dev", ifname)
	peer.IP(t, "addr", "add", peerAddr, "dev", peerIfname)
	n.IP(t, "link", "set", ifname, "up")
	peer.IP(t, "link", "set", peerIfname, "up")
}

// Hosts writes the namespace's /etc/hosts, which `ip netns exec` puts in place
// of the system's for the programs it runs (lines such as "10.1.0.1 proxy.corp.test").
func (n *Netns) Hosts(t testing.TB, lines ...string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "127.0.0.1 localhost\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Do runs fn on an OS thread moved into the namespace: sockets fn creates are
// the namespace's. The thread is never returned to the scheduler (the
// goroutine exits locked), so no other code runs in the namespace by mistake.
// fn must not start goroutines that create sockets, nor resolve names.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/run/netns", n.Name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", n.Name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Listen listens on addr (an IP address and port) inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// DialContext dials addr (an IP address and port) from inside the namespace.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// WaitListening waits until addr accepts TCP connections, dialled from ns
// (nil: here).
func WaitListening(ns *Netns, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var (
			c   net.Conn
			err error
		)
		if ns != nil {
			c, err = ns.DialContext(ctx, "tcp", addr)
		} else {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp", addr)
		}
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
