package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/lifecycle"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// TestDialRetriesAfterWakeThenGivesUp: once Wake says running, the agent keeps
// trying the reported address on its schedule, then gives up with a clear log line
// and forgets the address so that the next request wakes the server again.
func TestDialRetriesAfterWakeThenGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var wakes atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wakes.Add(1)
		fmt.Fprintf(w, `{"state":"running","address":%q,"desired_count":1,"running_count":1}`, closed)
	}))
	defer api.Close()

	dir := t.TempDir()
	_, _, files := writeCerts(t, dir)
	certs, err := tunnel.NewCertReloader(files[0], files[1], filepath.Join(dir, "ca.crt"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg := defaultConfig()
	cfg.RetryInterval, cfg.RetryTimeout = 50*time.Millisecond, 300*time.Millisecond
	client := &lifecycle.APIClient{Endpoint: api.URL, APIKey: "k"}
	waker := lifecycle.NewWaker(client, lifecycle.WakerConfig{PollInterval: 10 * time.Millisecond, Timeout: 5 * time.Second})
	defer waker.Close()
	d := &serverDialer{cfg: cfg, certs: certs, waker: waker, log: zerolog.New(&logs)}

	start := time.Now()
	if _, err := d.dial(context.Background()); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("gave up after %v, want about the 300ms retry timeout", took)
	}
	if n := strings.Count(logs.String(), "server not accepting yet"); n < 3 {
		t.Errorf("%d retries logged, want several:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "giving up") {
		t.Errorf("no give-up line:\n%s", logs.String())
	}
	before := wakes.Load()
	_, _ = d.dial(context.Background())
	if wakes.Load() == before {
		t.Error("the address was not forgotten: no new Wake after giving up")
	}
}

// TestDialReachesAStartingServerQuickly: a server that starts listening 600 ms
// after Wake said running is reached within about a second, not at the next
// connect_retry_interval (5 s): the attempts start at 250 ms and double.
func TestDialReachesAStartingServerQuickly(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, files := writeCerts(t, dir)
	// Learn a free port, then leave it closed until the "server process" is up.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"state":"running","address":%q,"desired_count":1,"running_count":1}`, addr)
	}))
	defer api.Close()
	srv := newTestServer(t, ca, srvCert)
	served := make(chan error, 1)
	go func() {
		time.Sleep(600 * time.Millisecond) // the task's process starting
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			served <- err
			return
		}
		served <- srv.Serve(context.Background(), ln)
	}()

	certs, err := tunnel.NewCertReloader(files[0], files[1], filepath.Join(dir, "ca.crt"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig() // connect_retry_interval 5 s, timeout 90 s
	client := &lifecycle.APIClient{Endpoint: api.URL, APIKey: "k"}
	waker := lifecycle.NewWaker(client, lifecycle.WakerConfig{PollInterval: 10 * time.Millisecond, Timeout: 5 * time.Second})
	defer waker.Close()
	d := &serverDialer{cfg: cfg, certs: certs, waker: waker, log: zerolog.Nop()}
	start := time.Now()
	conn, err := d.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	took := time.Since(start)
	t.Logf("reached the starting server after %v", took.Round(time.Millisecond))
	_ = srv.Close()
	if err := <-served; !errors.Is(err, tunnel.ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
	if took > 2500*time.Millisecond {
		t.Fatalf("reached the starting server after %v, want about 1 s (attempts from 250 ms, doubling)", took)
	}
}
