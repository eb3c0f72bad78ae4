package wire

import (
	"fmt"
	"net/http"
	"net/textproto"
	"sort"

	"golang.org/x/net/http/httpguts"
)

// HTTPRequest is the payload of "http" and "websocket" frames.
type HTTPRequest struct {
	Method        string      `json:"method"`
	URL           string      `json:"url"`
	Host          string      `json:"host,omitempty"`
	Header        http.Header `json:"header,omitempty"`
	ContentLength int64       `json:"content_length"`
}

// ConnectRequest is the payload of "connect" frames.
type ConnectRequest struct {
	Addr string `json:"addr"`
}

// HTTPResponse is the payload of "response" frames.
type HTTPResponse struct {
	Status        int         `json:"status"`
	Header        http.Header `json:"header,omitempty"`
	ContentLength int64       `json:"content_length"`
}

// Error is the payload of "error" frames.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// Request is the frame that starts a stream: the agent's "http", "connect" or
// "websocket" frame, decoded in one pass whatever its type.
type Request struct {
	Type    string         `json:"type"`
	Payload requestPayload `json:"payload"`
}

// requestPayload holds the members of every request payload.
type requestPayload struct {
	HTTPRequest
	ConnectRequest
}

// HTTP returns the payload of an "http" or "websocket" frame.
func (r *Request) HTTP() *HTTPRequest { return &r.Payload.HTTPRequest }

// Connect returns the payload of a "connect" frame.
func (r *Request) Connect() *ConnectRequest { return &r.Payload.ConnectRequest }

func (r *Request) reset() { *r = Request{} }

func (r *Request) check() error {
	switch r.Type {
	case TypeHTTP, TypeWebSocket:
		p := &r.Payload.HTTPRequest
		if p.Method == "" || p.URL == "" {
			return fmt.Errorf("%w: %s frame without method or url", ErrMalformed, r.Type)
		}
		if p.ContentLength < -1 {
			return fmt.Errorf("%w: content_length %d", ErrMalformed, p.ContentLength)
		}
		h, err := canonicalHeader(p.Header)
		if err != nil {
			return err
		}
		p.Header = h
	case TypeConnect:
		if r.Payload.Addr == "" {
			return fmt.Errorf("%w: connect frame without addr", ErrMalformed)
		}
	case "":
		return fmt.Errorf("%w: missing type", ErrMalformed)
	default:
		return &UnknownTypeError{Type: r.Type}
	}
	return nil
}

// Answer is the frame the server sends first on a stream: "response",
// "connected" or "error", decoded in one pass whatever its type.
type Answer struct {
	Type    string        `json:"type"`
	Payload answerPayload `json:"payload"`
}

type answerPayload struct {
	HTTPResponse
	Error
}

// Response returns the payload of a "response" frame.
func (a *Answer) Response() *HTTPResponse { return &a.Payload.HTTPResponse }

// Err returns the payload of an "error" frame.
func (a *Answer) Err() *Error { return &a.Payload.Error }

func (a *Answer) reset() { *a = Answer{} }

func (a *Answer) check() error {
	switch a.Type {
	case TypeResponse:
		p := &a.Payload.HTTPResponse
		if p.Status < 100 || p.Status > 999 {
			return fmt.Errorf("%w: status %d", ErrMalformed, p.Status)
		}
		if p.ContentLength < -1 {
			return fmt.Errorf("%w: content_length %d", ErrMalformed, p.ContentLength)
		}
		h, err := canonicalHeader(p.Header)
		if err != nil {
			return err
		}
		p.Header = h
	case TypeConnected:
	case TypeError:
		if a.Payload.Code == "" {
			return fmt.Errorf("%w: error frame without code", ErrMalformed)
		}
	case "":
		return fmt.Errorf("%w: missing type", ErrMalformed)
	default:
		return &UnknownTypeError{Type: a.Type}
	}
	return nil
}

// UnknownTypeError reports a well-formed frame of a type its reader does not expect.
type UnknownTypeError struct{ Type string }

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("tunnel: unexpected frame type %q", e.Type)
}

// Is makes an UnknownTypeError match ErrMalformed.
func (e *UnknownTypeError) Is(target error) bool { return target == ErrMalformed }

// canonicalHeader returns h with every name in canonical form (a peer that sends
// "connection" must not get a hop-by-hop header past a check for "Connection"),
// values of names that differ only in case merged, and every name and value
// checked as net/http would check them.
func canonicalHeader(h http.Header) (http.Header, error) {
	if h == nil {
		return make(http.Header), nil
	}
	canonical := true
	for name, values := range h {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("%w: invalid header name %q", ErrMalformed, name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("%w: invalid value for header %s", ErrMalformed, name)
			}
		}
		if textproto.CanonicalMIMEHeaderKey(name) != name {
			canonical = false
		}
	}
	if canonical {
		return h, nil
	}
	// Merge in a fixed order, so that one header always decodes one way.
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make(http.Header, len(h))
	for _, name := range names {
		key := textproto.CanonicalMIMEHeaderKey(name)
		out[key] = append(out[key], h[name]...)
	}
	return out, nil
}
