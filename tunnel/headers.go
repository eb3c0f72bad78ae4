package tunnel

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are meaningful only for a single transport-level connection (RFC 9110
// §7.6.1) and must not be forwarded by a proxy. "Proxy-Connection" is not standard but
// clients still send it.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers, including those named by Connection,
// in place. With keepUpgrade the Connection/Upgrade pair survives so that a WebSocket
// handshake can be replayed to the target. Names must be canonical, as the frame
// decoder and net/http make them.
func removeHopHeaders(h http.Header, keepUpgrade bool) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			name = textproto.TrimString(name)
			if name == "" || (keepUpgrade && strings.EqualFold(name, "Upgrade")) {
				continue
			}
			h.Del(name)
		}
	}
	for _, name := range hopHeaders {
		if keepUpgrade && (name == "Connection" || name == "Upgrade") {
			continue
		}
		delete(h, name)
	}
	if keepUpgrade {
		h.Set("Connection", "Upgrade")
	}
}

// isWebSocketUpgrade reports whether h asks to switch to the WebSocket protocol.
func isWebSocketUpgrade(h http.Header) bool {
	return headerHasToken(h, "Connection", "upgrade") && headerHasToken(h, "Upgrade", "websocket")
}

// IsWebSocketUpgrade reports whether r is a WebSocket opening handshake.
func IsWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && isWebSocketUpgrade(r.Header)
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[textproto.CanonicalMIMEHeaderKey(name)] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// bodyAllowed reports whether a response may carry a body (RFC 9110 §6.4.1).
func bodyAllowed(method string, status int) bool {
	if method == http.MethodHead {
		return false
	}
	return !(status >= 100 && status < 200) && status != http.StatusNoContent && status != http.StatusNotModified
}
