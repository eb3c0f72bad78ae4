package tunnel

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestHTTPStatus(t *testing.T) {
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"remote refused", &RemoteError{Code: CodeRefused}, http.StatusForbidden},
		{"remote timeout", &RemoteError{Code: CodeTimeout}, http.StatusGatewayTimeout},
		{"remote over capacity", fmt.Errorf("wrapped: %w", &RemoteError{Code: CodeOverCapacity}), http.StatusServiceUnavailable},
		{"unknown remote code", &RemoteError{Code: "something-new"}, http.StatusBadGateway},
		{"caller deadline", context.DeadlineExceeded, http.StatusGatewayTimeout},
		{"tunnel unreachable by timeout", fmt.Errorf("%w: %w", ErrTunnelUnavailable, timeout), http.StatusBadGateway},
		{"session closed", ErrSessionClosed, http.StatusBadGateway},
		{"session lost to a keepalive timeout", fmt.Errorf("%w: %w", ErrSessionClosed, timeout), http.StatusBadGateway},
		{"stream reset", &resetError{Code: 2}, http.StatusBadGateway},
	}
	for _, tc := range tests {
		if got := HTTPStatus(tc.err); got != tc.want {
			t.Errorf("%s: HTTPStatus = %d, want %d", tc.name, got, tc.want)
		}
	}
}

var updateProtocol = flag.Bool("update-protocol", false, "rewrite PROTOCOL.md's error-code table from errors.go")

// TestProtocolErrorTable keeps PROTOCOL.md's error-code table generated from
// codeTable, the list HTTPStatus answers from.
func TestProtocolErrorTable(t *testing.T) {
	var b strings.Builder
	b.WriteString("| code | meaning | agent status |\n| --- | --- | --- |\n")
	for _, c := range codeTable {
		fmt.Fprintf(&b, "| `%s` | %s | %d |\n", c.Code, c.Meaning, c.Status)
		if got := (&RemoteError{Code: c.Code}).HTTPStatus(); got != c.Status {
			t.Errorf("%s answers %d, table says %d", c.Code, got, c.Status)
		}
	}
	const path = "PROTOCOL.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- begin error-codes -->\n", "<!-- end error-codes -->"
	i, j := strings.Index(string(data), begin), strings.Index(string(data), end)
	if i < 0 || j < i {
		t.Fatalf("%s: error-code table markers not found", path)
	}
	if current := string(data[i+len(begin) : j]); current != b.String() {
		if !*updateProtocol {
			t.Fatalf("%s: the error-code table is out of date; run: go test ./tunnel/ -run TestProtocolErrorTable -update-protocol", path)
		}
		out := string(data[:i+len(begin)]) + b.String() + string(data[j:])
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := (&RemoteError{Code: "from_the_future"}).HTTPStatus(); got != http.StatusBadGateway {
		t.Errorf("unknown code answers %d, want 502 (as unreachable)", got)
	}
}
