package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"

	"github.com/fluidity-tunnel/fluidity/internal/breaker"
	"github.com/fluidity-tunnel/fluidity/internal/egress"
)

// ErrorCode classifies a failure the server reports on a stream. The codes and the
// HTTP status each maps to are listed in PROTOCOL.md.
type ErrorCode string

// Error codes.
const (
	CodeBadRequest         ErrorCode = "bad_request"
	CodeRefused            ErrorCode = "refused"
	CodeDNS                ErrorCode = "dns"
	CodeConnectionRefused  ErrorCode = "connection_refused"
	CodeUnreachable        ErrorCode = "unreachable"
	CodeTimeout            ErrorCode = "timeout"
	CodeBreakerOpen        ErrorCode = "breaker_open"
	CodeOverCapacity       ErrorCode = "over_capacity"
	CodeShuttingDown       ErrorCode = "shutting_down"
	CodeUnsupportedVersion ErrorCode = "unsupported_version"
	CodeInternal           ErrorCode = "internal"
)

// Sentinels that a *RemoteError matches with errors.Is, so callers need not compare codes.
var (
	ErrRefusedByPolicy = errors.New("tunnel: refused by server policy")
	ErrOverCapacity    = errors.New("tunnel: server over capacity")
	ErrBreakerOpen     = errors.New("tunnel: circuit breaker open")
	ErrTargetTimeout   = errors.New("tunnel: target timeout")
	ErrTargetDNS       = errors.New("tunnel: target name does not resolve")
	ErrTargetRefused   = errors.New("tunnel: target refused connection")
	ErrBadRequest      = errors.New("tunnel: bad request")
	ErrServerDraining  = errors.New("tunnel: server shutting down")
)

// ErrSessionClosed is returned for work attempted on a closed session.
var ErrSessionClosed = errors.New("tunnel: session closed")

// ErrTunnelUnavailable wraps every failure to reach the server (dial, TLS, wake-up):
// the tunnel itself is down, whatever the target would have said.
var ErrTunnelUnavailable = errors.New("tunnel: server unreachable")

// RemoteError is a failure reported by the server in an error frame.
type RemoteError struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message,omitempty"`
}

func (e *RemoteError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("tunnel: remote: %s", e.Code)
	}
	return fmt.Sprintf("tunnel: remote: %s: %s", e.Code, e.Message)
}

// Timeout makes a RemoteError satisfy net.Error.
func (e *RemoteError) Timeout() bool { return e.Code == CodeTimeout }

// Temporary is part of net.Error; every server-side failure may clear up on retry
// except a policy refusal or a malformed request.
func (e *RemoteError) Temporary() bool {
	return e.Code != CodeRefused && e.Code != CodeBadRequest
}

// sentinelCodes pairs each sentinel with the code it stands for.
var sentinelCodes = map[error]ErrorCode{
	ErrRefusedByPolicy: CodeRefused,
	ErrOverCapacity:    CodeOverCapacity,
	ErrBreakerOpen:     CodeBreakerOpen,
	ErrTargetTimeout:   CodeTimeout,
	ErrTargetDNS:       CodeDNS,
	ErrTargetRefused:   CodeConnectionRefused,
	ErrBadRequest:      CodeBadRequest,
	ErrServerDraining:  CodeShuttingDown,
}

// Is matches the package's sentinels.
func (e *RemoteError) Is(target error) bool {
	code, ok := sentinelCodes[target]
	return ok && code == e.Code
}

var _ net.Error = (*RemoteError)(nil)

// HTTPStatus is the status a proxy should answer its client with for this failure.
// Unknown codes answer as unreachable does.
func (e *RemoteError) HTTPStatus() int {
	for _, c := range codeTable {
		if c.Code == e.Code {
			return c.Status
		}
	}
	return http.StatusBadGateway
}

// codeTable is the one list of error codes: PROTOCOL.md's table is checked
// against it (TestProtocolErrorTable).
var codeTable = []struct {
	Code    ErrorCode
	Meaning string
	Status  int
}{
	{CodeBadRequest, "malformed frame or request", http.StatusBadRequest},
	{CodeRefused, "the server's egress policy refuses the target", http.StatusForbidden},
	{CodeDNS, "the target name does not resolve", http.StatusBadGateway},
	{CodeConnectionRefused, "the target refused the connection", http.StatusBadGateway},
	{CodeUnreachable, "any other dial or upstream failure", http.StatusBadGateway},
	{CodeTimeout, "dial or upstream timeout", http.StatusGatewayTimeout},
	{CodeBreakerOpen, "the circuit breaker for that host and port is open", http.StatusServiceUnavailable},
	{CodeOverCapacity, "the server is at `max_connections`", http.StatusServiceUnavailable},
	{CodeShuttingDown, "the server is draining; nothing was done, the agent may retry elsewhere", http.StatusServiceUnavailable},
	{CodeUnsupportedVersion, "the frame's protocol version is unknown to the server", http.StatusBadGateway},
	{CodeInternal, "a bug on the server", http.StatusBadGateway},
}

// HTTPStatus maps any error from this package to the status a proxy should answer
// with: the remote code when the server reported one, 504 for timeouts, 502 otherwise.
func HTTPStatus(err error) int {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.HTTPStatus()
	}
	if errors.Is(err, ErrTunnelUnavailable) || errors.Is(err, ErrSessionClosed) {
		// A timeout reaching our own server, or its keepalive failing, is not
		// the target's timeout.
		return http.StatusBadGateway
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// codedError lets errors produced by pluggable parts of the server (dialers, policies)
// name the code they should travel as without importing this package.
type codedError interface {
	TunnelErrorCode() string
}

// classify turns a server-side failure into the error frame sent to the agent. The
// message carries no more than the error's text, which names the target host at most.
func classify(err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		return re
	}
	code := CodeUnreachable
	var (
		ce     codedError
		dnsErr *net.DNSError
		ne     net.Error
	)
	switch {
	case errors.Is(err, egress.ErrRefused):
		return &RemoteError{Code: CodeRefused, Message: refusalMessage(err)}
	case errors.Is(err, breaker.ErrOpen):
		code = CodeBreakerOpen
	case errors.As(err, &ce):
		code = ErrorCode(ce.TunnelErrorCode())
	case errors.As(err, &dnsErr) && !dnsErr.IsTimeout:
		code = CodeDNS
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		code = CodeTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		code = CodeConnectionRefused
	}
	return &RemoteError{Code: code, Message: err.Error()}
}
