// Package faults holds Fluidity's fault-injection, crash and soak tests.
//
// The tests run a tunnel (the in-process tunnel server, client and proxy, or the
// real fluidity-server binary) with github.com/Shopify/toxiproxy/v2 proxies,
// in-process, between the agent and the server and between the server and a
// local target, and assert that every failure reaches the local client as a
// prompt, correct answer: added latency, a bandwidth limit, connection resets, a
// black hole and a slicer; the server killed with SIGKILL mid-transfer and
// restarted; and a soak of mixed HTTP, CONNECT and WebSocket traffic with
// injected failures, after which goroutines and heap must be back where they
// started.
//
// Everything lives in the _test.go files. The normal run (go test ./...) includes
// a reduced soak of 1,000 requests; the full one (10,000 requests) is behind the
// soak build tag:
//
//	go test -race -count=1 -tags soak -run '^TestSoak$' -timeout 20m ./internal/faults/...
//
// Everything listens and dials on loopback only.
package faults
