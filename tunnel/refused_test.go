package tunnel

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/pki"
)

// strangerCert is a client certificate from a CA of the same name as the
// test PKI's but another key: the agent offers it (its issuer's name is one
// the server asks for), and the server refuses it as of an unknown
// authority. This is an agent left with the certificate of a CA since made
// anew.
func strangerCert(t *testing.T) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueClient(pki.ClientOptions{Name: "stranger"})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestRefusedCertificateNamed: when the server refuses the agent's
// certificate (with TLS 1.3, after the agent's side of the handshake is
// over), the Client's errors and its lanes' status say so — ErrClientCertificate
// around crypto/tls's alert — not "session closed"; and the lanes retry with
// backoff, not as fast as handshakes go.
func TestRefusedCertificateNamed(t *testing.T) {
	p := sharedPKI(t)
	addr := serveMTLS(t, p.server, p.pool)
	kp := strangerCert(t)
	tlsCfg := NewClientTLSConfig(mustTLSCert(t, kp, nil), p.pool, DefaultServerName)
	var dials atomic.Int64
	ccfg := DefaultClientConfig()
	ccfg.Logger = testLogger(t)
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		return DialTLS(ctx, addr, tlsCfg)
	}
	ccfg.ReconnectMin = 100 * time.Millisecond
	c, err := NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	named := func(what string, err error) {
		t.Helper()
		var oe *net.OpError
		switch {
		case err == nil:
			t.Errorf("%s: no error", what)
		case !errors.Is(err, ErrClientCertificate) || !errors.As(err, &oe):
			t.Errorf("%s: %v, want ErrClientCertificate around the TLS alert", what, err)
		case !strings.Contains(err.Error(), "unknown certificate authority"):
			t.Errorf("%s: %q does not name the alert", what, err)
		}
	}
	err = errOnly(c.RoundTrip(mustRequest("GET", "http://127.0.0.1:1/").WithContext(ctx)))
	named("request", err)
	_, err = c.DialContext(ctx, "tcp", "127.0.0.1:1")
	named("dial", err)
	_, err = c.Ping(ctx)
	named("ping", err)

	// A session that failed and was then closed (a reconnect replacing it,
	// a retry retiring it) still gives the first reason.
	sess, err := c.session(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-sess.Done()
	_ = sess.Close()
	named("closed after failing", sess.Err())

	runCtx, stop := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer stop()
	before := dials.Load()
	_ = c.Run(runCtx)
	// 100 ms doubling, with jitter, on two lanes: about ten attempts in
	// 1.5 s. Without the backoff each lane redialled as soon as its session
	// ended, and a lane's success brought the other up at once: 28 attempts
	// in 1.5 s under -race, 260 in 2 s without.
	n := dials.Load() - before
	t.Logf("%d connection attempts in 1.5 s of Run", n)
	if n > 20 {
		t.Errorf("%d connection attempts in 1.5 s of Run, want a backoff", n)
	}
	for _, si := range c.Sessions() {
		if !si.Up {
			named("lane status", si.Err)
		}
	}
}

// TestDialTimeoutNamed: a server that accepts but never finishes the
// handshake fails the attempt with the dial timeout named, and
// context.DeadlineExceeded still matching.
func TestDialTimeoutNamed(t *testing.T) {
	addr := silentTarget(t) // accepts, and never answers the ClientHello
	p := sharedPKI(t)
	tlsCfg := NewClientTLSConfig(p.client, p.pool, DefaultServerName)
	ccfg := DefaultClientConfig()
	ccfg.Logger = testLogger(t)
	ccfg.Sessions = 1
	ccfg.DialTimeout = 200 * time.Millisecond
	ccfg.Dial = func(ctx context.Context) (net.Conn, error) { return DialTLS(ctx, addr, tlsCfg) }
	c, err := NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Connect(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTunnelUnavailable) || !strings.Contains(err.Error(), "dial timeout (200ms)") {
		t.Fatalf("connect: %v, want the dial timeout named", err)
	}
	if si := c.Sessions()[0]; !errors.Is(si.Err, context.DeadlineExceeded) {
		t.Fatalf("lane status: %v", si.Err)
	}
}
