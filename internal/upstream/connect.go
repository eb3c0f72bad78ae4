package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	ntlmssp "github.com/Azure/go-ntlmssp"
)

// ErrProxyAuth matches (errors.Is) a *ProxyError whose proxy demanded
// authentication (407) that this dialer could not give or that it refused.
var ErrProxyAuth = errors.New("upstream proxy: authentication failed")

// ProxyError is an HTTP proxy's refusal of a CONNECT.
type ProxyError struct {
	Proxy      string // the proxy, redacted
	Target     string // host:port asked for
	StatusCode int
	Status     string // the proxy's status line text, e.g. "407 Proxy Authentication Required"
	// Offered lists the schemes of the proxy's Proxy-Authenticate headers (407).
	Offered []string
	// Hint says what to change; set for 407.
	Hint string
}

func (e *ProxyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream proxy %s refused CONNECT %s: %s", e.Proxy, e.Target, e.Status)
	if e.StatusCode == http.StatusProxyAuthRequired {
		if len(e.Offered) == 0 {
			b.WriteString(" (it offered no authentication scheme)")
		} else {
			fmt.Fprintf(&b, " (it offers %s; this agent speaks Basic, NTLM and Negotiate)", strings.Join(e.Offered, ", "))
		}
	}
	if e.Hint != "" {
		b.WriteString(": " + e.Hint)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrProxyAuth) true for a 407.
func (e *ProxyError) Is(target error) bool {
	return target == ErrProxyAuth && e.StatusCode == http.StatusProxyAuthRequired
}

// maxDrain bounds the body of a refusal read to keep its connection.
const maxDrain = 64 << 10

// authState is where the CONNECT handshake stands.
type authState int

const (
	authNone          authState = iota // no Proxy-Authorization sent yet
	authBasicSent                      // Basic credentials sent
	authNegotiateSent                  // NTLM negotiate message sent: a challenge is due
	authNTLMSent                       // NTLM authenticate message sent
	authKerberosSent                   // a Negotiate (Kerberos) token sent
)

// connect opens a tunnel to target through an HTTP(S) proxy. It first asks
// without credentials, and answers a 407 with, in this order of preference,
// Negotiate (Kerberos, when configured), NTLM (both keep the password off the
// wire) or Basic, among the schemes the proxy offers. NTLM authenticates the
// connection, so negotiate, challenge and authenticate share one connection.
func (r *route) connect(ctx context.Context, target string) (net.Conn, error) {
	var (
		conn  net.Conn
		br    *bufio.Reader
		state = authNone
		auth  string // the Proxy-Authorization value for the next request
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for attempt := 0; attempt < 4; attempt++ {
		if conn == nil {
			c, err := r.dialProxy(ctx)
			if err != nil {
				return nil, err
			}
			conn, br = c, bufio.NewReader(c)
		}
		// roundTrip closes a refusal's body. A 200's is the tunnel, handed over
		// unread in br: closing it would discard the bytes of a Content-Length the
		// proxy should not have sent (RFC 9110 9.3.6) rather than ignore it.
		resp, err := r.roundTrip(ctx, conn, br, target, auth) //nolint:bodyclose // a 200's body is the tunnel (see above)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusOK {
			c := &bufferedConn{Conn: conn, r: br}
			conn = nil // handed over
			return c, nil
		}
		pe := &ProxyError{Proxy: Redacted(r.u), Target: target, StatusCode: resp.StatusCode, Status: resp.Status}
		if resp.StatusCode != http.StatusProxyAuthRequired {
			return nil, pe
		}
		offers := resp.Header.Values("Proxy-Authenticate")
		pe.Offered = schemes(offers)
		if resp.Close {
			conn.Close()
			conn = nil
		}
		switch {
		case state == authKerberosSent:
			pe.Hint = "the proxy rejected the Kerberos ticket for " + r.krb.spn + " as " + r.krb.principal + " (from " + r.krb.credFrom + ")"
			return nil, pe
		case state == authNone && r.krb != nil && offersScheme(pe.Offered, "Negotiate"):
			tok, err := r.krb.token()
			if err != nil {
				pe.Hint = err.Error()
				return nil, pe
			}
			auth, state = tok, authKerberosSent
		case !r.hasCreds:
			pe.Hint = "set credentials in " + KeyCredentialsFile + " (a file holding user:password) or in " + KeyProxy + "'s URL"
			if offersScheme(pe.Offered, "Negotiate") && r.krb == nil {
				pe.Hint += ", or for Kerberos " + KeyKrb5Conf + " and " + KeyKeytab
			}
			return nil, pe
		case state == authNegotiateSent:
			challenge, ok := ntlmToken(offers)
			if !ok || conn == nil {
				pe.Hint = "the proxy answered the NTLM negotiation without a challenge on the same connection"
				return nil, pe
			}
			msg, err := ntlmssp.NewAuthenticateMessage(wellFormed(challenge), r.user, r.password, nil)
			if err != nil {
				pe.Hint = "cannot answer the proxy's NTLM challenge: " + err.Error()
				return nil, pe
			}
			auth, state = "NTLM "+base64.StdEncoding.EncodeToString(msg), authNTLMSent
		case state != authNone:
			pe.Hint = "the proxy rejected the credentials from " + r.credFrom
			return nil, pe
		case offersScheme(pe.Offered, "NTLM"):
			msg, err := ntlmssp.NewNegotiateMessage("", "")
			if err != nil {
				return nil, err
			}
			auth, state = "NTLM "+base64.StdEncoding.EncodeToString(msg), authNegotiateSent
			// The challenge must come on the connection that negotiated.
			if conn == nil {
				attempt-- // the unauthenticated probe does not count
			}
		case offersScheme(pe.Offered, "Basic"):
			auth, state = "Basic "+base64.StdEncoding.EncodeToString([]byte(r.user+":"+r.password)), authBasicSent
		case offersScheme(pe.Offered, "Negotiate"):
			pe.Hint = "the proxy wants Kerberos: set " + KeyKrb5Conf + " (and " + KeyKeytab + ", or user@REALM:password in " + KeyCredentialsFile + ")"
			return nil, pe
		default:
			pe.Hint = "no scheme this agent speaks"
			return nil, pe
		}
	}
	return nil, fmt.Errorf("upstream proxy %s: CONNECT %s: authentication did not settle", Redacted(r.u), target)
}

// dialProxy makes the connection to the proxy, with TLS for https://.
func (r *route) dialProxy(ctx context.Context) (net.Conn, error) {
	c, err := r.forward.DialContext(ctx, "tcp", r.u.Host)
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %s: %w", Redacted(r.u), err)
	}
	if r.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, r.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream proxy %s: TLS: %w", Redacted(r.u), err)
	}
	return tc, nil
}

// roundTrip writes one CONNECT and reads the answer's header, within ctx: a
// proxy that never answers fails with ctx's error.
func (r *route) roundTrip(ctx context.Context, conn net.Conn, br *bufio.Reader, target, auth string) (*http.Response, error) {
	if !validTarget(target) {
		return nil, fmt.Errorf("upstream proxy %s: %q is not host:port", Redacted(r.u), target)
	}
	// ctx's end (deadline or cancellation) unblocks the exchange; the error is
	// then ctx's.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	var b strings.Builder
	// RFC 9110 9.3.6: the request-target is host:port, and Host repeats it.
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(&b, "Proxy-Authorization: %s\r\n", auth)
	}
	b.WriteString("Proxy-Connection: Keep-Alive\r\n\r\n")
	_, werr := io.WriteString(conn, b.String())
	var (
		resp *http.Response
		err  = werr
	)
	if err == nil {
		resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		// Read the refusal's body, to keep the connection for the next attempt
		// if the proxy does and the body is short; a longer one costs a new
		// connection instead.
		n, derr := io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain+1))
		resp.Body.Close()
		resp.Close = resp.Close || derr != nil || n > maxDrain
	}
	if !stop() || ctx.Err() != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("upstream proxy %s: CONNECT %s: %w", Redacted(r.u), target, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("upstream proxy %s: CONNECT %s: %w", Redacted(r.u), target, err)
	}
	return resp, nil
}

// validTarget refuses what would break the request line or inject a header.
func validTarget(target string) bool {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || port == "" {
		return false
	}
	return !strings.ContainsFunc(target, func(c rune) bool { return c <= ' ' || c == 0x7f })
}

// schemes returns the scheme of each Proxy-Authenticate value ("NTLM",
// "Basic realm=..." -> "Basic").
func schemes(values []string) []string {
	var out []string
	for _, v := range values {
		// One header may carry several challenges; the scheme is each first token
		// of a comma-separated part that is not a parameter (no '=').
		for _, part := range strings.Split(v, ",") {
			tok, _, _ := strings.Cut(strings.TrimSpace(part), " ")
			if tok != "" && !strings.Contains(tok, "=") {
				out = append(out, tok)
			}
		}
	}
	return out
}

func offersScheme(offered []string, scheme string) bool {
	for _, s := range offered {
		if strings.EqualFold(s, scheme) {
			return true
		}
	}
	return false
}

// ntlmToken finds "NTLM <base64>" among Proxy-Authenticate values.
func ntlmToken(values []string) ([]byte, bool) {
	for _, v := range values {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok || !strings.EqualFold(scheme, "NTLM") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(tok))
		if err == nil && len(b) > 0 {
			return b, true
		}
	}
	return nil, false
}

// bufferedConn is the tunnel after the proxy's 200: it reads first what the
// proxy sent right after its answer and the header reader already holds.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil // drained: read the connection directly from now on
	}
	return c.Conn.Read(p)
}

// wellFormed returns an NTLM CHALLENGE message go-ntlmssp can read. Some
// servers send fields pointing outside the message: squid's ntlm_fake_auth
// sends the short (pre-NTLMv2, 40-byte header) form, with a garbage TargetName
// offset and no TargetInfo. Clients such as curl ignore such fields; so does
// this: a message whose fields are out of range is rebuilt with the same
// flags and server challenge, an empty TargetName, and its TargetInfo only if
// that lies within the message. A sound message is returned unchanged.
func wellFormed(b []byte) []byte {
	const header = 48 // signature, type, TargetName, flags, challenge, reserved, TargetInfo
	if len(b) < 32 {
		return b // too short to mend; go-ntlmssp reports it
	}
	field := func(at int) (n, off int, ok bool) {
		if len(b) < at+8 {
			return 0, 0, false
		}
		n = int(binary.LittleEndian.Uint16(b[at:]))
		off = int(binary.LittleEndian.Uint32(b[at+4:]))
		return n, off, off >= header && off+n <= len(b)
	}
	nameLen, _, nameOK := field(12)
	infoLen, infoOff, infoOK := field(40)
	if len(b) >= header && (nameOK || nameLen == 0) && (infoOK || infoLen == 0) {
		return b
	}
	out := make([]byte, header, header+infoLen)
	copy(out, b[:32]) // signature, type, TargetName (cleared below), flags, challenge
	binary.LittleEndian.PutUint64(out[12:], 0)
	binary.LittleEndian.PutUint32(out[16:], header)
	binary.LittleEndian.PutUint32(out[44:], header)
	if infoOK && infoLen > 0 {
		binary.LittleEndian.PutUint16(out[40:], uint16(infoLen)) // #nosec G115 -- read from a 16-bit field above
		binary.LittleEndian.PutUint16(out[42:], uint16(infoLen)) // #nosec G115 -- read from a 16-bit field above
		out = append(out, b[infoOff:infoOff+infoLen]...)
	}
	return out
}
