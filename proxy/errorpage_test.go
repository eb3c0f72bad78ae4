package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluidity-tunnel/fluidity/internal/upstream"
	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// wakingError stands for the waker's "the server is starting" error: all the
// proxy knows of it is the RetryAfter method.
type wakingError struct{ after time.Duration }

func (e wakingError) Error() string             { return "lifecycle: server starting" }
func (e wakingError) RetryAfter() time.Duration { return e.after }

func down(cause error) error { return fmt.Errorf("%w: %w", tunnel.ErrTunnelUnavailable, cause) }

func TestExplain(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
		title      string // a piece of the title
	}{
		{"waking", fmt.Errorf("%w: %w", tunnel.ErrTunnelUnavailable, wakingError{2500 * time.Millisecond}), 503, "", "3", "starting"},
		{"waking, under a second", wakingError{10 * time.Millisecond}, 503, "", "1", "starting"},
		{"waking, no estimate", wakingError{}, 503, "", "1", "starting"},
		{"refused", &tunnel.RemoteError{Code: tunnel.CodeRefused}, 403, "refused", "", "egress policy"},
		{"dns", &tunnel.RemoteError{Code: tunnel.CodeDNS}, 502, "dns", "", "intranet.example does not resolve"},
		{"connection refused", &tunnel.RemoteError{Code: tunnel.CodeConnectionRefused}, 502, "connection_refused", "", "refused the connection"},
		{"timeout", &tunnel.RemoteError{Code: tunnel.CodeTimeout}, 504, "timeout", "", "did not answer in time"},
		{"unreachable", &tunnel.RemoteError{Code: tunnel.CodeUnreachable}, 502, "unreachable", "", "cannot be reached"},
		{"breaker", &tunnel.RemoteError{Code: tunnel.CodeBreakerOpen}, 503, "breaker_open", "", "keeps failing"},
		{"over capacity", &tunnel.RemoteError{Code: tunnel.CodeOverCapacity}, 503, "over_capacity", "", "busy"},
		{"draining", &tunnel.RemoteError{Code: tunnel.CodeShuttingDown}, 503, "shutting_down", "", "restarting"},
		{"bad request", &tunnel.RemoteError{Code: tunnel.CodeBadRequest}, 400, "bad_request", "", "malformed"},
		{"unknown code", &tunnel.RemoteError{Code: "new_thing"}, 502, "new_thing", "", "server failed"},
		{"proxy auth", down(&upstream.ProxyError{StatusCode: 407, Status: "407 Proxy Authentication Required"}), 502, "", "", "credentials"},
		{"proxy refusal", down(&upstream.ProxyError{StatusCode: 403, Status: "403 Forbidden"}), 502, "", "", "upstream proxy refused"},
		{"unknown CA", down(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), 502, "", "", "server's certificate was rejected"},
		{"wrong name", down(x509.HostnameError{Host: "fluidity-server", Certificate: &x509.Certificate{}}), 502, "", "", "server's certificate was rejected"},
		{"client cert refused", down(fmt.Errorf("%w: %w", tunnel.ErrClientCertificate, &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")})), 502, "", "", "rejected this agent's certificate"},
		{"other TLS alert", down(&net.OpError{Op: "remote error", Err: errors.New("tls: protocol version not supported")}), 502, "", "", "broke off the TLS handshake"},
		{"no route", down(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), 502, "", "", "cannot be reached"},
		{"session closed", tunnel.ErrSessionClosed, 502, "", "", "cannot be reached"},
		{"local timeout", localTimeout{}, 504, "", "", "timed out"},
		{"other", errors.New("something"), 502, "", "", "failed in the tunnel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := explain(tc.err, "intranet.example")
			if f.Status != tc.status || string(f.Code) != tc.code {
				t.Errorf("status %d code %q, want %d %q", f.Status, f.Code, tc.status, tc.code)
			}
			h := http.Header{}
			f.header(h)
			if got := h.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if got := h.Get("X-Fluidity-Error"); got != tc.code {
				t.Errorf("X-Fluidity-Error %q, want %q", got, tc.code)
			}
			if !strings.Contains(f.Title, tc.title) {
				t.Errorf("title %q, want it to contain %q", f.Title, tc.title)
			}
			if f.What == "" || f.Do == "" {
				t.Errorf("what %q / do %q: a person is told neither what happened nor what to do", f.What, f.Do)
			}
		})
	}
}

// localTimeout is a net.Error timeout that is not the tunnel's.
type localTimeout struct{}

func (localTimeout) Error() string   { return "deadline" }
func (localTimeout) Timeout() bool   { return true }
func (localTimeout) Temporary() bool { return true }

func TestWantsHTML(t *testing.T) {
	tests := []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"text/html", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8", true},
		{"application/xhtml+xml", true},
		{"text/plain, text/html;q=0", false},
		{"TEXT/HTML; charset=utf-8", true},
		{";;;, text/html", true},
	}
	for _, tc := range tests {
		if got := wantsHTML(tc.accept); got != tc.want {
			t.Errorf("wantsHTML(%q) = %v, want %v", tc.accept, got, tc.want)
		}
	}
}

// TestErrorPages asks through a real proxy as a browser and as curl would.
func TestErrorPages(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		accept string
		status int
		ctype  string
		body   []string // pieces of the body
	}{
		{"browser, dns", &tunnel.RemoteError{Code: tunnel.CodeDNS}, "text/html,*/*;q=0.8", 502, "text/html",
			[]string{"<h1>target.example does not resolve</h1>", "<!doctype html>", "Check the spelling"}},
		{"curl, dns", &tunnel.RemoteError{Code: tunnel.CodeDNS}, "*/*", 502, "text/plain",
			[]string{"fluidity: 502 Bad Gateway (dns): target.example does not resolve\n"}},
		{"browser, waking", wakingError{30 * time.Second}, "text/html", 503, "text/html",
			[]string{`<meta http-equiv="refresh" content="30">`, "starting", "Try again in 30 seconds"}},
		{"browser, detail escaped", down(errors.New("<script>x</script>")), "text/html", 502, "text/html",
			[]string{"&lt;script&gt;x&lt;/script&gt;"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxyURL := startProxy(t, fakeTunnel{tc.err}, nil)
			hc, done := proxiedClient(proxyURL, nil)
			defer done()
			req, _ := http.NewRequest("GET", "http://target.example/secret/path?q=1", nil)
			req.Header.Set("Accept", tc.accept)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Fatalf("%d %q, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype)
			}
			for _, want := range tc.body {
				if !strings.Contains(string(body), want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			if strings.Contains(string(body), "<script>") || strings.Contains(string(body), "secret/path") {
				t.Errorf("body carries what it must not:\n%s", body)
			}
		})
	}
}

// TestRetryAfter: the waking contract holds for plain HTTP, CONNECT and WebSocket.
func TestRetryAfter(t *testing.T) {
	proxyURL := startProxy(t, fakeTunnel{fmt.Errorf("wake: %w", wakingError{4200 * time.Millisecond})}, nil)
	hc, done := proxiedClient(proxyURL, nil)
	defer done()
	check := func(kind string, resp *http.Response) {
		t.Helper()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
			t.Errorf("%s: %d Retry-After %q, want 503 and 5", kind, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	resp, err := hc.Get("http://target.example/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	check("http", resp)

	cresp, body := connectVia(t, proxyURL.Host)
	check("connect", cresp)
	if !strings.HasPrefix(cresp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), "starting") {
		t.Errorf("connect: %q %q, want a short plain body", cresp.Header.Get("Content-Type"), body)
	}
	wresp := upgradeVia(t, hc)
	check("websocket", wresp)
}

// connectVia asks the proxy at host for CONNECT target.example:443 and returns
// its answer, with the body read and closed.
//
//bodyclose:handled
func connectVia(t *testing.T, host string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// upgradeVia sends a WebSocket upgrade for target.example through hc's proxy
// and returns the answer, its body closed.
//
//bodyclose:handled
func upgradeVia(t *testing.T, hc *http.Client) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://target.example/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
