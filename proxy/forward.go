package proxy

import (
	"io"
	"net/http"
	"strings"
	"time"
)

// forward serves a plain-HTTP proxy request (absolute URL, not CONNECT, not a
// WebSocket upgrade) through the tunnel. It does what goproxy's handler did for
// it, without goproxy: that handler only called this one through its request
// hooks and copied the answer, and building its context and log arguments for
// every request was about 4 % of the agent's CPU (BENCHMARKS.md).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host := r.URL.Hostname()
	resp, err := p.tun.RoundTrip(r)
	if err != nil {
		f := explain(err, host)
		p.logRequest(r.Method, host, f.Status, start, err)
		writeFailure(w, r, f)
		return
	}
	defer resp.Body.Close()
	p.logRequest(r.Method, host, resp.StatusCode, start, nil)
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	stream := false
	if resp.ContentLength < 0 && r.ProtoAtLeast(1, 1) {
		// net/http's server then chunks, and each piece is flushed as it
		// arrives: streamed responses stream.
		h.Set("Transfer-Encoding", "chunked")
		stream = true
	} else if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
		stream = true
	}
	// Trailers known now are announced, which makes net/http's server commit to
	// chunking (as httputil.ReverseProxy does).
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h.Add("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	var dst io.Writer = w
	if stream {
		dst = flushWriter{w}
	}
	// A body read that fails aborts the handler, which drops the client
	// connection: net/http would otherwise end a chunked response cleanly and
	// a body cut short would reach the client as if complete.
	if _, err := io.Copy(dst, abortOnError{resp.Body}); err != nil {
		return // the client went away
	}
	if len(resp.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush() // a short body must still be chunked
		for k, vs := range resp.Trailer {
			if len(resp.Trailer) != announced {
				k = http.TrailerPrefix + k
			}
			h[k] = append(h[k], vs...)
		}
	}
}

// writeFailure answers a failed plain-HTTP request: a page for a browser, text
// for anything else.
func writeFailure(w http.ResponseWriter, r *http.Request, f failure) {
	ct, body := f.page(r.Header.Get("Accept"))
	h := w.Header()
	h.Set("Content-Type", ct)
	f.header(h)
	w.WriteHeader(f.Status)
	_, _ = w.Write(body) //nolint:gosec // html/template escaped the page (errorpage.go); the text form is served as text/plain
}

// flushWriter sends every write to the client at once.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// abortOnError turns a failed body read into an aborted response (see forward).
type abortOnError struct{ io.ReadCloser }

func (b abortOnError) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		panic(http.ErrAbortHandler)
	}
	return n, err
}
