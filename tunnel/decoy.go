package tunnel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Probe resistance.
//
// A server that answers every TLS client without a certificate with a
// handshake alert is unlike any website, and a censor scanning addresses for
// such servers finds the tunnel in one connection. With a decoy, such a client
// completes the handshake and gets what an ordinary web server would give it: a
// small 404, or a static page. Only a client whose certificate the CA verified
// ever reaches the tunnel; a certificate that fails verification (another CA,
// expired, wrong usage) still fails the handshake, as on any server that asks
// for client certificates, and a denied one (deny_clients) too.

// DecoyConfig makes the server answer TLS clients that present no client
// certificate like an ordinary HTTPS server, instead of with a handshake
// failure. The zero value is off.
type DecoyConfig struct {
	// Enabled turns the decoy on. The server then lets a client finish the
	// handshake without a certificate (tls.VerifyClientCertIfGiven in place of
	// the TLSConfig's RequireAndVerifyClientCert) and serves it HTTP/1.1 or h2,
	// whichever ALPN chose.
	Enabled bool
	// Page, if set, is served for GET and HEAD of "/" with status 200, its
	// content type sniffed (http.DetectContentType); every other path is a 404.
	// Without it every path is a 404. At most 1 MiB.
	Page []byte
	// MaxConns caps decoy connections open at once; past it a new one is closed
	// at once, as by a busy server. Default 16.
	MaxConns int
}

const (
	defaultMaxDecoyConns = 16
	maxDecoyPage         = 1 << 20
	// A decoy client gets what a careful web server allows: headers within 5 s
	// (nginx's client_header_timeout is 60 s; a probe needs far less), a reply
	// written within 10 s, a kept-alive connection idle for 30 s, 8 KiB of
	// headers (nginx's default large_client_header_buffers), and a connection's
	// whole life bounded, so that slots free up whatever a client does.
	decoyHeaderTimeout = 5 * time.Second
	decoyWriteTimeout  = 10 * time.Second
	decoyIdleTimeout   = 30 * time.Second
	decoyMaxLife       = 2 * time.Minute
	decoyHeaderBytes   = 8 << 10
	decoyH2Streams     = 8
)

// decoyNotFound is the body of the 404, in the shape of the one nginx and most
// servers send, without naming any server.
const decoyNotFound = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n</body>\r\n</html>\r\n"

func (c DecoyConfig) withDefaults() DecoyConfig {
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxDecoyConns
	}
	return c
}

func (c DecoyConfig) validate() error {
	switch {
	case c.MaxConns < 0:
		return errors.New("tunnel: server: max decoy connections must not be negative")
	case len(c.Page) > maxDecoyPage:
		return fmt.Errorf("tunnel: server: decoy page of %d bytes is over the 1 MiB limit", len(c.Page))
	}
	return nil
}

// decoyTLS returns cfg letting clients without a certificate finish the
// handshake: ClientAuth VerifyClientCertIfGiven, on cfg and on the
// configurations its GetConfigForClient returns. A certificate given is
// verified as strictly as before; the server serves a session only over a
// verified chain (handshakeAndServe).
func decoyTLS(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if get := cfg.GetConfigForClient; get != nil {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hello)
			if c == nil || err != nil {
				return c, err
			}
			c = c.Clone()
			if c.ClientAuth == tls.RequireAndVerifyClientCert {
				c.ClientAuth = tls.VerifyClientCertIfGiven
			}
			return c, nil
		}
	}
	return cfg
}

// decoy serves the connections handed to it with one net/http server.
type decoy struct {
	page  []byte
	ctype string
	slots chan struct{}
	ln    *handoffListener
	srv   *http.Server
	run   sync.Once // Serve starts with the first decoy connection

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]*time.Timer // each open connection, with its decoyMaxLife timer
	wg      sync.WaitGroup           // one per entry of conns
}

func newDecoy(cfg DecoyConfig) *decoy {
	cfg = cfg.withDefaults()
	d := &decoy{
		page:  cfg.Page,
		slots: make(chan struct{}, cfg.MaxConns),
		ln:    newHandoffListener(),
		conns: make(map[net.Conn]*time.Timer),
	}
	if len(d.page) > 0 {
		d.ctype = http.DetectContentType(d.page)
	}
	d.srv = &http.Server{
		Handler:           http.HandlerFunc(d.serveHTTP),
		ReadHeaderTimeout: decoyHeaderTimeout,
		ReadTimeout:       decoyHeaderTimeout + decoyWriteTimeout,
		WriteTimeout:      decoyWriteTimeout,
		IdleTimeout:       decoyIdleTimeout,
		MaxHeaderBytes:    decoyHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: decoyH2Streams},
		// Its complaints (malformed requests, closed conns) are a prober's, not
		// worth a line each; the refusal summary counts decoys.
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnState: d.connState,
	}
	return d
}

// serve hands conn, whose handshake is done, to the HTTP server, or closes it
// when MaxConns decoy connections are open already or the decoy is closing.
// start is called, once, to run the HTTP server's Serve (d.ln) in a goroutine
// its caller owns.
func (d *decoy) serve(conn *tls.Conn, start func(serve func())) bool {
	select {
	case d.slots <- struct{}{}:
	default:
		_ = conn.Close()
		return false
	}
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		<-d.slots
		_ = conn.Close()
		return false
	}
	// net/http must see the *tls.Conn itself (it picks h2 by its ALPN), so
	// the lifetime timer is kept beside it rather than in a wrapper.
	d.conns[conn] = time.AfterFunc(decoyMaxLife, func() { _ = conn.Close() })
	d.wg.Add(1)
	d.mu.Unlock()
	d.run.Do(func() { start(func() { _ = d.srv.Serve(d.ln) }) })
	if !d.ln.handoff(conn) {
		_ = conn.Close()
		d.release(conn)
		return false
	}
	return true
}

// release frees c's slot; only the first call for c counts.
func (d *decoy) release(c net.Conn) {
	d.mu.Lock()
	t, ok := d.conns[c]
	delete(d.conns, c)
	d.mu.Unlock()
	if !ok {
		return
	}
	t.Stop()
	<-d.slots
	d.wg.Done()
}

// connState frees a connection's slot once net/http is done with it (h2
// connections included: net/http reports them closed when their server ends).
func (d *decoy) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		d.release(c)
	}
}

// close stops the HTTP server, closes every decoy connection and waits until
// net/http is done with each; Serve, if it ran, returns.
func (d *decoy) close() {
	d.mu.Lock()
	d.closing = true
	open := make([]net.Conn, 0, len(d.conns))
	for c := range d.conns {
		open = append(open, c)
	}
	d.mu.Unlock()
	_ = d.ln.Close()
	_ = d.srv.Close()
	// net/http closes the connections it tracks; these are closed too in case
	// one was accepted as it closed.
	for _, c := range open {
		_ = c.Close()
	}
	d.wg.Wait()
}

func (d *decoy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if d.page != nil && r.URL.Path == "/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			d.plain(w, http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", d.ctype)
		h.Set("Content-Length", strconv.Itoa(len(d.page)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(d.page)
		}
		return
	}
	d.plain(w, http.StatusNotFound)
}

// plain writes the small HTML page of an error status.
func (d *decoy) plain(w http.ResponseWriter, code int) {
	body := decoyNotFound
	if code != http.StatusNotFound {
		line := strconv.Itoa(code) + " " + http.StatusText(code)
		body = "<html>\r\n<head><title>" + line + "</title></head>\r\n<body>\r\n<center><h1>" + line + "</h1></center>\r\n</body>\r\n</html>\r\n"
	}
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// handoffListener is a net.Listener whose connections are handed to it.
type handoffListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// handoff waits for Accept to take c; false if the listener closed first.
func (l *handoffListener) handoff(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return decoyAddr{} }

type decoyAddr struct{}

func (decoyAddr) Network() string { return "decoy" }
func (decoyAddr) String() string  { return "decoy" }
