package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"math"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// RetryAfterError is what an error that means "the server is asleep or
// starting, ask again in a while" implements (the lifecycle's waker returns
// one). The proxy answers it with 503 and a Retry-After header, whatever else
// the error wraps.
type RetryAfterError interface {
	error
	RetryAfter() time.Duration
}

// failure is a failed request, explained for the person behind the client.
type failure struct {
	Status int
	// Code is the server's error code, sent as X-Fluidity-Error; empty when
	// the failure is the agent's own (the tunnel is down).
	Code tunnel.ErrorCode
	// Waking is set while the server is starting; RetryAfter is its estimate.
	Waking     bool
	RetryAfter time.Duration
	Title      string // one line: what happened
	What       string // a sentence or two on why
	Do         string // what to do about it
	Detail     string // the error's own text, for whoever has to debug it
}

// retryAfterSeconds is the Retry-After header's value: whole seconds,
// rounded up, at least 1.
func (f failure) retryAfterSeconds() int {
	return max(1, int(math.Ceil(f.RetryAfter.Seconds())))
}

// explain classifies err for a request to host. It looks at the causes a person
// can act on: the server waking, its egress policy, the target, and why the
// tunnel itself is down.
func explain(err error, host string) failure {
	f := failure{Status: tunnel.HTTPStatus(err), Detail: err.Error()}
	if host == "" {
		host = "the target"
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		f.Status = http.StatusServiceUnavailable
		f.Waking = true
		f.RetryAfter = ra.RetryAfter()
		f.Title = "The Fluidity server is starting"
		f.What = "Your Fluidity server was asleep to save money; the agent has woken it. Starting takes a minute or two."
		f.Do = fmt.Sprintf("Try again in %d seconds; a browser reloads this page by itself.", f.retryAfterSeconds())
		return f
	}
	var re *tunnel.RemoteError
	if errors.As(err, &re) {
		f.Code = re.Code
		explainRemote(&f, re.Code, host)
		return f
	}
	explainTunnel(&f, err)
	return f
}

func explainRemote(f *failure, code tunnel.ErrorCode, host string) {
	switch code {
	case tunnel.CodeRefused:
		f.Title = "Refused by the server's egress policy"
		f.What = fmt.Sprintf("Your Fluidity server does not connect to %s: its policy keeps it out of private, loopback and link-local networks unless they are allowed.", host)
		f.Do = "If you need to reach it, open it on the server with allow_hosts or allow_cidrs; for an intranet site, reach it directly rather than through the tunnel."
	case tunnel.CodeDNS:
		f.Title = fmt.Sprintf("%s does not resolve", host)
		f.What = fmt.Sprintf("The Fluidity server looked up %s and found no address for it.", host)
		f.Do = "Check the spelling. Names that only exist inside your own network do not resolve on the server: reach them directly, not through the tunnel."
	case tunnel.CodeConnectionRefused:
		f.Title = fmt.Sprintf("%s refused the connection", host)
		f.What = fmt.Sprintf("The Fluidity server reached %s, but nothing accepts connections on that port.", host)
		f.Do = "Check the address and port, and that the service is running."
	case tunnel.CodeTimeout:
		f.Title = fmt.Sprintf("%s did not answer in time", host)
		f.What = fmt.Sprintf("The Fluidity server tried %s, which did not answer before the timeout.", host)
		f.Do = "The site may be down or slow; try again later."
	case tunnel.CodeUnreachable:
		f.Title = fmt.Sprintf("%s cannot be reached", host)
		f.What = fmt.Sprintf("The Fluidity server could not connect to %s.", host)
		f.Do = "The site may be down, or not reachable from where your server runs; try again later."
	case tunnel.CodeBreakerOpen:
		f.Title = fmt.Sprintf("%s keeps failing", host)
		f.What = fmt.Sprintf("Requests to %s failed several times in a row, so the Fluidity server pauses them for a short while (a circuit breaker).", host)
		f.Do = "Try again in half a minute."
	case tunnel.CodeOverCapacity:
		f.Title = "The Fluidity server is busy"
		f.What = "The server is at its limit of connections at once (max_connections)."
		f.Do = "Try again in a moment; if it keeps happening, raise max_connections on the server."
	case tunnel.CodeShuttingDown:
		f.Title = "The Fluidity server is restarting"
		f.What = "The server is shutting down and took no new work."
		f.Do = "Try again in a moment."
	case tunnel.CodeBadRequest:
		f.Title = "The request was malformed"
		f.What = "The Fluidity server could not make sense of this request."
		f.Do = "Check the address you asked for."
	default:
		f.Title = "The Fluidity server failed"
		f.What = fmt.Sprintf("The server reported %q for this request.", code)
		f.Do = "Try again; if it keeps happening, look at the server's log."
	}
}

// explainTunnel says why the agent could not reach its own server, or, for a
// failure that is not about reaching it, says what little it knows.
func explainTunnel(f *failure, err error) {
	var (
		pe         *upstream.ProxyError
		op         *net.OpError
		verify     *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		badName    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	down := errors.Is(err, tunnel.ErrTunnelUnavailable) || errors.Is(err, tunnel.ErrSessionClosed)
	switch {
	case errors.Is(err, upstream.ErrProxyAuth):
		f.Title = "The upstream proxy refused the agent's credentials"
		f.What = "The agent reaches your server through an upstream proxy, which asked for authentication and did not accept what the agent sent."
		f.Do = "Check upstream_proxy_credentials_file (one line, user:password, or DOMAIN\\user:password for NTLM)."
	case errors.As(err, &pe):
		f.Title = "The upstream proxy refused to connect to the server"
		f.What = fmt.Sprintf("The upstream proxy answered %q when the agent asked it for the server.", pe.Status)
		f.Do = "Check upstream_proxy, and that the proxy lets connections out to the server's port."
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &badName), errors.As(err, &invalidErr):
		f.Title = "The server's certificate was rejected"
		f.What = "The agent reached something at the server's address, but its certificate is not one your CA signed for the server name."
		f.Do = "Check ca_cert_file (the CA that signed the server's certificate) and server_name, and that server_ip points at your Fluidity server."
	case errors.Is(err, tunnel.ErrClientCertificate):
		// The tunnel names the TLS alerts with which a server refuses a
		// client certificate (in TLS 1.3, after the agent's side of the
		// handshake).
		f.Title = "The server rejected this agent's certificate"
		f.What = "Your Fluidity server refused the agent's client certificate: it may be signed by another CA, expired, or on the server's deny_clients list."
		f.Do = "Check cert_file and key_file, or issue a new client certificate with fluidity certs."
	case errors.As(err, &op) && op.Op == "remote error":
		// Another TLS alert: the server (or something at its address) broke
		// off the handshake for a reason that is not the certificate.
		f.Title = "The server broke off the TLS handshake"
		f.What = fmt.Sprintf("The agent reached something at the server's address, which ended the TLS handshake with an alert (%v).", op.Err)
		f.Do = "Check that server_ip and server_port point at your Fluidity server, and the server's log for why it refused."
	case down:
		f.Title = "The Fluidity server cannot be reached"
		f.What = "The agent could not connect to your server: it may be stopped, or the address or a firewall is in the way."
		f.Do = "Check that the server runs and that server_ip and server_port are right; the agent keeps retrying."
	case f.Status == http.StatusGatewayTimeout:
		f.Title = "The request timed out"
		f.What = "No answer came through the tunnel in time."
		f.Do = "Try again later."
	default:
		f.Title = "The request failed in the tunnel"
		f.What = "The request could not be carried to its target."
		f.Do = "Try again; if it keeps happening, look at the agent's log."
	}
}

//go:embed errorpage.html
var errorPageHTML string

var errorPage = template.Must(template.New("error").Parse(errorPageHTML))

// wantsHTML reports whether a client's Accept header takes text/html: browsers
// do, curl and programs usually do not.
func wantsHTML(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || (mt != "text/html" && mt != "application/xhtml+xml") {
			continue
		}
		if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q == 0 {
			continue
		}
		return true
	}
	return false
}

// text is the plain-text answer: the status, the code, and the explanation.
func (f failure) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fluidity: %d %s", f.Status, http.StatusText(f.Status))
	if f.Code != "" {
		fmt.Fprintf(&b, " (%s)", f.Code)
	}
	fmt.Fprintf(&b, ": %s\n", f.Title)
	if f.What != "" {
		fmt.Fprintf(&b, "%s\n%s\n", f.What, f.Do)
	}
	return b.String()
}

// page renders the answer for a client accepting accept: the HTML page or text.
func (f failure) page(accept string) (contentType string, body []byte) {
	if !wantsHTML(accept) {
		return "text/plain; charset=utf-8", []byte(f.text())
	}
	var b bytes.Buffer
	data := struct {
		failure
		StatusText string
		Refresh    int
	}{f, http.StatusText(f.Status), 0}
	if f.Waking {
		data.Refresh = f.retryAfterSeconds()
	}
	if err := errorPage.Execute(&b, data); err != nil {
		return "text/plain; charset=utf-8", []byte(f.text())
	}
	return "text/html; charset=utf-8", b.Bytes()
}

// header sets the headers every failed answer carries.
func (f failure) header(h http.Header) {
	if f.Code != "" {
		h.Set("X-Fluidity-Error", string(f.Code))
	}
	if f.Waking {
		h.Set("Retry-After", strconv.Itoa(f.retryAfterSeconds()))
	}
}
