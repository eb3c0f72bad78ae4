package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/http"
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
	}
	for _, tc := range tests {
		if got := HTTPStatus(tc.err); got != tc.want {
			t.Errorf("%s: HTTPStatus = %d, want %d", tc.name, got, tc.want)
		}
	}
}
