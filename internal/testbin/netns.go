package testbin

import "os/exec"

// Netns is a network namespace made by a test with iproute2 (`ip netns`), for
// tests that need a network where some paths do not exist: an office whose
// only way out is a proxy. It needs root (CI runs as root).
//
// Programs run inside it with [Netns.Command]; the test's own sockets are made
// inside it with [Netns.Listen] and [Netns.DialContext], and then used from any
// goroutine (a socket stays in the namespace it was created in).
type Netns struct {
	Name string
}

// Command runs name with args inside the namespace. `ip netns exec` execs the
// program, so the process is the program itself: signals reach it directly.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}
