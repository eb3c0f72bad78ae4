// Package e2e holds Fluidity's end-to-end tests: they build the real
// fluidity-agent, fluidity-server and fluidity binaries, generate certificates
// with `fluidity certs`, start the daemons as processes on 127.0.0.1 and drive
// them with curl, Go's http.Client and a WebSocket client through the proxy.
//
// Everything lives in the _test.go files; this file only names the package.
// Run the large-transfer memory checks alone, without the race detector, with
//
//	go test -count=1 -run Big ./internal/e2e/...
package e2e
