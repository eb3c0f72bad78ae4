// Package logging builds the zerolog loggers used by Fluidity's daemons and
// helps keep secrets out of their output.
package logging

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w with timestamps.
//
// level is one of trace, debug, info, warn or error (empty means info).
// format is json (the default when empty) for machines and log shippers
// such as CloudWatch, or console for people reading a terminal. Colour is
// used only when w is a terminal, so redirected output stays plain text.
// The global zerolog settings are left alone.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvlName := strings.ToLower(strings.TrimSpace(level))
	if lvlName == "" {
		lvlName = "info"
	}
	lvl, ok := parseLevel(lvlName)
	if !ok {
		return zerolog.Nop(), fmt.Errorf("logging: unknown level %q (want trace, debug, info, warn or error)", level)
	}
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: !isTerminal(w), TimeFormat: time.RFC3339}
	default:
		return zerolog.Nop(), fmt.Errorf("logging: unknown format %q (want json or console)", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// parseLevel accepts only the five levels the daemons document; zerolog's
// own parser would also admit fatal, panic and disabled.
func parseLevel(name string) (zerolog.Level, bool) {
	switch name {
	case "trace":
		return zerolog.TraceLevel, true
	case "debug":
		return zerolog.DebugLevel, true
	case "info":
		return zerolog.InfoLevel, true
	case "warn":
		return zerolog.WarnLevel, true
	case "error":
		return zerolog.ErrorLevel, true
	}
	return zerolog.NoLevel, false
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Domain reduces a target (host:port, a bare host, or a full URL) to its
// host name alone, so logs record where traffic went without user names,
// passwords, paths, query strings or fragments. The result is lower-case,
// without brackets around IPv6 addresses and without a trailing dot. It is
// empty when no plausible host can be found, rather than echoing input that
// might hold a secret.
func Domain(hostport string) string {
	s := strings.TrimSpace(hostport)
	var host string
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			host = u.Hostname()
		} else {
			_, rest, _ := strings.Cut(s, "://")
			host = authorityHost(rest)
		}
	} else {
		host = authorityHost(strings.TrimPrefix(s, "//"))
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !plausibleHost(host) {
		return ""
	}
	return host
}

// authorityHost extracts the host from "[userinfo@]host[:port][/path...]".
// Everything up to the last '@' is dropped before looking for the path, so a
// password containing '/' or '?' still never leaks; the cost is that an '@'
// in a query string can yield the wrong host, which is the safer mistake.
func authorityHost(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return s[1 : len(s)-1]
	}
	return s
}

// plausibleHost admits the characters of DNS names, IPv4 and IPv6 literals
// (with zones), which also keeps control characters and spaces out of logs.
func plausibleHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '.', r == '-', r == '_', r == ':', r == '%':
		default:
			return false
		}
	}
	return true
}
