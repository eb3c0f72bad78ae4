// Package tunnel carries HTTP requests, CONNECT streams and WebSockets from a client
// to a server over mutually authenticated TLS 1.3 connections, each multiplexed with
// yamux (github.com/libp2p/go-yamux): every unit of work is its own stream with its
// own flow control, so a client that stops reading one download holds up nothing
// else, and its own reset, so that an abort reaches the server at once.
//
// The server side is a Server: give it a TLS configuration (NewServerTLSConfig, or a
// CertReloader for certificates that change on disk) and a listener with Serve, or an
// authenticated connection with ServeConn. It dials targets under an egress policy,
// with circuit breakers per target host and port, safe retries and limits that
// answer with typed errors; Shutdown drains, Close stops at once.
//
// The client side is a Client: it keeps ClientConfig.Sessions connections to the
// server (dialled with ClientConfig.Dial, for instance DialTLS), reconnects with
// backoff, and opens each stream on the least busy connection. RoundTrip makes it an
// http.RoundTripper, DialContext fits http.Transport.DialContext, DialWebSocket
// performs an Upgrade, and Ping checks the tunnel end to end. Errors from the server
// arrive as *RemoteError values that match this package's sentinels with errors.Is,
// and HTTPStatus maps any error to the status a proxy should answer with.
//
// Zero-value configurations mean the defaults, which DefaultServerConfig and
// DefaultClientConfig spell out.
//
// The wire format (frames, stream kinds, how a stream ends, error and reset codes,
// limits, versioning) is specified in PROTOCOL.md next to this file.
package tunnel
