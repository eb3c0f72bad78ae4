package tunnel

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"
	"golang.org/x/net/http/httpguts"

	"github.com/fluidity-tunnel/fluidity/internal/relay"
	"github.com/fluidity-tunnel/fluidity/tunnel/internal/wire"
)

// serveHTTP makes one HTTP request for the agent and streams the answer back.
func (s *Server) serveHTTP(ctx context.Context, abort context.CancelFunc, st *stream, p *wire.HTTPRequest, log zerolog.Logger) (string, error) {
	u, err := parseTargetURL(p.URL, "http", "https")
	if err != nil {
		return "", s.fail(st, err)
	}
	host := u.Hostname()
	if err := validRequest(p.Method, p.Host); err != nil {
		return host, s.fail(st, err)
	}
	// Once the body is in, the stream carries nothing until the answer: a reset
	// from the agent then is an abort, and must stop the upstream request at once.
	// (After an unknown-length body the agent's FIN has ended its side, and an
	// abort shows only when the answer is written.)
	watch := s.watchAbort(st, abort, p.ContentLength == 0, true)
	defer watch.stop()
	var body *bodyWatch
	if p.ContentLength != 0 {
		body = &bodyWatch{r: newBodyReader(st, p.ContentLength, false), onEOF: watch.start}
	}
	// The request is built from the URL already parsed, not from its string
	// (which http.NewRequest would parse again): what NewRequest checks was
	// checked above.
	req, err := http.NewRequestWithContext(ctx, p.Method, "", nil)
	if err != nil {
		return host, s.fail(st, &RemoteError{Code: CodeBadRequest, Message: err.Error()})
	}
	req.URL = u
	req.Host = strings.TrimSuffix(u.Host, ":") // as NewRequest does: an empty port is none
	removeHopHeaders(p.Header, false)
	req.Header = p.Header
	if body != nil {
		req.Body = io.NopCloser(body)
		req.ContentLength = max(p.ContentLength, 0)
		if p.ContentLength < 0 {
			req.ContentLength = -1
		}
	}
	if p.Host != "" {
		req.Host = p.Host
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = nil // do not add Go's default
	}
	resp, err := s.roundTripGuarded(ctx, log, host, req, body)
	if err != nil {
		return host, s.fail(st, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The request asked for no upgrade (its Upgrade header is hop-by-hop and
		// was removed): a reverse proxy answers such a switch 502.
		return host, s.fail(st, &RemoteError{Code: CodeUnreachable, Message: "target switched protocols unasked"})
	}
	err = s.forwardResponse(st, req.Method, resp, watch)
	return host, err
}

// forwardResponse sends a response frame and body, then ends the stream. A
// failure after the frame has gone out cannot be reported in-band: the stream
// is reset, which the agent reports as a truncated body (PROTOCOL.md).
func (s *Server) forwardResponse(st *stream, method string, resp *http.Response, watch *abortWatch) error {
	removeHopHeaders(resp.Header, false)
	n := resp.ContentLength
	if !bodyAllowed(method, resp.StatusCode) && method != http.MethodHead {
		n = 0
	}
	if err := s.answer(st, wire.TypeResponse, wire.HTTPResponse{Status: resp.StatusCode, Header: resp.Header, ContentLength: n}); err != nil {
		_ = st.reset(wire.ResetCancel)
		return err
	}
	if bodyAllowed(method, resp.StatusCode) {
		if err := writeBody(st, resp.Body, n); err != nil {
			// A body of known length cut short is told by its FIN alone, which
			// keeps what was sent readable. Without a length only a reset can
			// tell; yamux's receiver drops what it had buffered on a reset, so
			// the agent may see it before the answer, and answer 502.
			if n >= 0 {
				_ = st.CloseWrite()
			}
			_ = st.reset(wire.ResetInternal)
			return fmt.Errorf("response body: %w", err)
		}
	}
	_ = st.CloseWrite()
	if watch != nil {
		watch.stop()
	}
	s.finish(st)
	return nil
}

// writeBody sends a body of n bytes (all of src when n < 0).
func writeBody(dst io.Writer, src io.Reader, n int64) error {
	if n < 0 {
		_, err := relay.Copy(dst, src)
		return err
	}
	written, err := relay.Copy(dst, io.LimitReader(src, n))
	if err == nil && written < n {
		err = errShortBody
	}
	return err
}

// bodyWatch is the agent's request body as the upstream request reads it. It
// records whether reading failed, which is the agent's fault, not the
// target's, and calls onEOF at its end.
type bodyWatch struct {
	r     io.Reader
	onEOF func()
	bad   atomic.Bool
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.onEOF()
	case err != nil:
		b.bad.Store(true)
	}
	return n, err
}

func (b *bodyWatch) failed() bool { return b != nil && b.bad.Load() }

// validRequest refuses a method or Host the HTTP client would refuse anyway, so
// that the agent gets bad_request rather than a failure charged to the target.
// Header names and values were checked when the frame was decoded.
func validRequest(method, host string) error {
	if !httpguts.ValidHeaderFieldName(method) { // a method is a token, as a name is
		return &RemoteError{Code: CodeBadRequest, Message: "invalid method"}
	}
	if !httpguts.ValidHostHeader(host) {
		return &RemoteError{Code: CodeBadRequest, Message: "invalid Host header"}
	}
	return nil
}

func parseTargetURL(raw string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &RemoteError{Code: CodeBadRequest, Message: "unparsable URL"}
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, &RemoteError{Code: CodeBadRequest, Message: "URL without host"}
	}
	for _, sch := range schemes {
		if strings.EqualFold(u.Scheme, sch) {
			u.Scheme = sch
			return u, nil
		}
	}
	return nil, &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("unsupported scheme %q", u.Scheme)}
}
