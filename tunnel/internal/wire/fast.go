package wire

import (
	"net/http"
	"slices"
	"strconv"
)

// The fast codec writes and reads the frames a Fluidity peer actually sends —
// the payload types of this package, strings of printable ASCII — without
// reflection, in a fraction of the general codec's time and allocations: on
// the plain-HTTP path the two frames of a request were a sixth of the server's
// CPU. It is an accelerator, not a second definition of the format: appendFast
// produces byte for byte what the general codec (jsonOptions) produces, and
// decodeFast accepts a header only when it is sure to decode it exactly as the
// general codec would. Anything else (escapes other than \" \\ \t, bytes
// outside printable ASCII, whitespace, unknown or repeated members, numbers in
// another spelling) makes it give up, and the general codec decides. The fuzz
// targets check both claims.

// appendFast appends the JSON header of (typ, payload) as json.Marshal with
// jsonOptions would, and reports whether it could.
func appendFast(dst []byte, typ string, payload any) ([]byte, bool) {
	if !plain(typ) {
		return dst, false
	}
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","payload":`...)
	ok := true
	switch p := payload.(type) {
	case HTTPRequest:
		dst, ok = appendHTTPRequest(dst, &p)
	case *HTTPRequest:
		dst, ok = appendHTTPRequest(dst, p)
	case HTTPResponse:
		dst, ok = appendHTTPResponse(dst, &p)
	case *HTTPResponse:
		dst, ok = appendHTTPResponse(dst, p)
	case ConnectRequest:
		dst, ok = appendMember(append(dst, '{'), "addr", p.Addr)
		dst = append(dst, '}')
	case Error:
		dst, ok = appendMember(append(dst, '{'), "code", p.Code)
		if ok && p.Message != "" {
			dst, ok = appendMember(append(dst, ','), "message", p.Message)
		}
		dst = append(dst, '}')
	case struct{}:
		dst = append(dst, "{}"...)
	default:
		return dst, false
	}
	return append(dst, '}'), ok
}

func appendHTTPRequest(dst []byte, p *HTTPRequest) ([]byte, bool) {
	dst = append(dst, '{')
	dst, ok := appendMember(dst, "method", p.Method)
	if ok {
		dst, ok = appendMember(append(dst, ','), "url", p.URL)
	}
	if ok && p.Host != "" {
		dst, ok = appendMember(append(dst, ','), "host", p.Host)
	}
	if ok && len(p.Header) > 0 {
		dst, ok = appendHeader(append(dst, `,"header":`...), p.Header)
	}
	dst = append(dst, `,"content_length":`...)
	dst = strconv.AppendInt(dst, p.ContentLength, 10)
	return append(dst, '}'), ok
}

func appendHTTPResponse(dst []byte, p *HTTPResponse) ([]byte, bool) {
	dst = append(dst, `{"status":`...)
	dst = strconv.AppendInt(dst, int64(p.Status), 10)
	ok := true
	if len(p.Header) > 0 {
		dst, ok = appendHeader(append(dst, `,"header":`...), p.Header)
	}
	dst = append(dst, `,"content_length":`...)
	dst = strconv.AppendInt(dst, p.ContentLength, 10)
	return append(dst, '}'), ok
}

// appendMember appends "name":"value" (name needs no escaping).
func appendMember(dst []byte, name, value string) ([]byte, bool) {
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return appendString(dst, value)
}

// appendHeader appends h with its names in byte order (json.Deterministic).
func appendHeader(dst []byte, h http.Header) ([]byte, bool) {
	var stack [32]string
	names := stack[:0]
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	dst = append(dst, '{')
	for i, name := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		var ok bool
		if dst, ok = appendString(dst, name); !ok {
			return dst, false
		}
		dst = append(dst, ':')
		values := h[name]
		if values == nil {
			dst = append(dst, "null"...) // json.FormatNilSliceAsNull
			continue
		}
		dst = append(dst, '[')
		for j, v := range values {
			if j > 0 {
				dst = append(dst, ',')
			}
			if dst, ok = appendString(dst, v); !ok {
				return dst, false
			}
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), true
}

// appendString quotes s as the general codec does, for s of printable ASCII
// and tabs; it reports false for anything else.
func appendString(dst []byte, s string) ([]byte, bool) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		case c == '\t':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 't')
			start = i + 1
		case c < 0x20 || c >= 0x7f:
			return dst, false
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), true
}

// plain reports whether s needs no escaping at all.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// fastReader decodes the header shapes appendFast writes. Every method
// returns false when the input is anything else.
type fastReader struct {
	b       []byte
	s       string // b as a string, made on first use
	i       int
	buf     []byte // unescaping scratch
	scratch [256]byte
}

func (r *fastReader) eat(c byte) bool {
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// rawString returns the bytes of a string with no escapes at all, as they
// stand in the input (used for member names, matched without allocating).
func (r *fastReader) rawString() ([]byte, bool) {
	if !r.eat('"') {
		return nil, false
	}
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			return s, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
		r.i++
	}
	return nil, false
}

// stringBytes returns a string's value, unescaping \" \\ and \t, and whether
// it had escapes; the result is valid until the next call. Without escapes it
// is r.b[r.i-len-1 : r.i-1].
func (r *fastReader) stringBytes() ([]byte, bool, bool) {
	if !r.eat('"') {
		return nil, false, false
	}
	start := r.i
	r.buf = r.buf[:0]
	escaped := false
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			if escaped {
				return append(r.buf, s...), true, true
			}
			return s, false, true
		case c == '\\':
			if r.i+1 >= len(r.b) {
				return nil, false, false
			}
			var u byte
			switch r.b[r.i+1] {
			case '"':
				u = '"'
			case '\\':
				u = '\\'
			case 't':
				u = '\t'
			default:
				return nil, false, false
			}
			r.buf = append(append(r.buf, r.b[start:r.i]...), u)
			escaped = true
			r.i += 2
			start = r.i
			continue
		case c < 0x20 || c >= 0x7f:
			return nil, false, false
		}
		r.i++
	}
	return nil, false, false
}

// string reads a string. Unescaped ones are cut from one copy of the whole
// header (one allocation per frame, not per string).
func (r *fastReader) string() (string, bool) {
	b, escaped, ok := r.stringBytes()
	if !ok {
		return "", false
	}
	if s, known := commonValues[string(b)]; known {
		return s, true
	}
	if escaped {
		return string(b), true
	}
	if r.s == "" {
		r.s = string(r.b)
	}
	end := r.i - 1
	return r.s[end-len(b) : end], true
}

// commonValues are strings decoded without allocating: methods and frame types.
var commonValues = map[string]string{
	"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE",
	"OPTIONS": "OPTIONS", "PATCH": "PATCH",
	TypeHTTP: TypeHTTP, TypeConnect: TypeConnect, TypeWebSocket: TypeWebSocket,
	TypeResponse: TypeResponse, TypeConnected: TypeConnected, TypeError: TypeError,
}

// int reads an integer as JSON spells it (no leading zeros, no fraction or
// exponent) that fits in an int64.
func (r *fastReader) int() (int64, bool) {
	start := r.i
	r.eat('-')
	digits := r.i
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		r.i++
	}
	if r.i == digits || (r.b[digits] == '0' && r.i-digits > 1) || (digits > start && r.b[digits] == '0') {
		return 0, false // no digits, a leading zero, or "-0": the general codec decides
	}
	if r.i < len(r.b) && (r.b[r.i] == '.' || r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(r.b[start:r.i]), 10, 64)
	return n, err == nil
}

// header reads a header object, or null. Its values share one slice (each
// name's part capped, so that appending to one cannot overwrite the next), as
// net/textproto shares a header's slice.
func (r *fastReader) header() (http.Header, bool) {
	if r.i+4 <= len(r.b) && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return nil, true
	}
	if !r.eat('{') {
		return nil, false
	}
	type entry struct {
		name       string
		first, end int // its values in values
		null       bool
	}
	var entryStack [32]entry
	var valueStack [48]string
	entries, values := entryStack[:0], valueStack[:0]
	if !r.eat('}') {
		for {
			nb, escaped, ok := r.stringBytes()
			if !ok || !r.eat(':') {
				return nil, false
			}
			e := entry{first: len(values)}
			if escaped {
				e.name = string(nb)
			} else {
				e.name = internName(nb)
			}
			if r.i+4 <= len(r.b) && string(r.b[r.i:r.i+4]) == "null" {
				r.i += 4
				e.null = true
			} else {
				if !r.eat('[') {
					return nil, false
				}
				if !r.eat(']') {
					for {
						v, ok := r.string()
						if !ok {
							return nil, false
						}
						values = append(values, v)
						if r.eat(']') {
							break
						}
						if !r.eat(',') {
							return nil, false
						}
					}
				}
			}
			e.end = len(values)
			entries = append(entries, e)
			if r.eat('}') {
				break
			}
			if !r.eat(',') {
				return nil, false
			}
		}
	}
	shared := make([]string, len(values))
	copy(shared, values)
	h := make(http.Header, len(entries))
	for _, e := range entries {
		if _, dup := h[e.name]; dup {
			return nil, false
		}
		if e.null {
			h[e.name] = nil
		} else {
			h[e.name] = shared[e.first:e.end:e.end]
		}
	}
	return h, true
}

// internName returns common header names without allocating.
func internName(b []byte) string {
	if s, ok := commonNames[string(b)]; ok {
		return s
	}
	return string(b)
}

var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age",
		"Cache-Control", "Connection", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Type", "Cookie", "Date", "Dnt", "Etag",
		"Expires", "Host", "If-Modified-Since", "If-None-Match", "Last-Modified",
		"Location", "Origin", "Pragma", "Priority", "Referer", "Sec-Ch-Ua",
		"Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest",
		"Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Upgrade-Insecure-Requests",
		"User-Agent", "Vary", "Via", "X-Content-Type-Options", "X-Forwarded-For",
		"X-Frame-Options",
	} {
		m[n] = n
	}
	return m
}()

// payloadFields receives a payload's members: member is called once per
// member with its name, and reports false for a name it does not take or a
// value it cannot read.
type payloadFields interface {
	member(r *fastReader, name string) bool
}

// decodeFast decodes body into v (already reset) and reports whether it
// could; on false v is in an unspecified state and must be reset.
func decodeFast(body []byte, v frameValue) bool {
	var p payloadFields
	var typ *string
	switch v := v.(type) {
	case *Request:
		p, typ = (*requestFields)(&v.Payload), &v.Type
	case *Answer:
		p, typ = (*answerFields)(&v.Payload), &v.Type
	default:
		return false
	}
	r := &fastReader{b: body}
	r.buf = r.scratch[:0]
	if !r.eat('{') {
		return false
	}
	var seenType, seenPayload bool
	for {
		name, ok := r.rawString()
		if !ok || !r.eat(':') {
			return false
		}
		switch string(name) { // member names are matched unescaped, as written
		case "type":
			if seenType {
				return false
			}
			seenType = true
			if *typ, ok = r.string(); !ok {
				return false
			}
		case "payload":
			if seenPayload || !r.object(p) {
				return false
			}
			seenPayload = true
		default:
			return false
		}
		if r.eat('}') {
			return r.i == len(r.b)
		}
		if !r.eat(',') {
			return false
		}
	}
}

// object reads a payload object (or null) into p, refusing repeated members.
func (r *fastReader) object(p payloadFields) bool {
	if r.i+4 <= len(r.b) && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	if !r.eat('{') {
		return false
	}
	if r.eat('}') {
		return true
	}
	var seen [8]string
	n := 0
	for {
		nb, ok := r.rawString()
		if !ok || !r.eat(':') {
			return false
		}
		name := memberName(nb)
		if name == "" {
			return false
		}
		for _, s := range seen[:n] {
			if s == name {
				return false
			}
		}
		if n == len(seen) {
			return false
		}
		seen[n] = name
		n++
		if !p.member(r, name) {
			return false
		}
		if r.eat('}') {
			return true
		}
		if !r.eat(',') {
			return false
		}
	}
}

// memberName returns the known payload member b names, or "".
func memberName(b []byte) string {
	switch string(b) {
	case "method":
		return "method"
	case "url":
		return "url"
	case "host":
		return "host"
	case "header":
		return "header"
	case "content_length":
		return "content_length"
	case "addr":
		return "addr"
	case "status":
		return "status"
	case "code":
		return "code"
	case "message":
		return "message"
	}
	return ""
}

type requestFields requestPayload

func (f *requestFields) member(r *fastReader, name string) bool {
	var ok bool
	switch name {
	case "method":
		f.Method, ok = r.string()
	case "url":
		f.URL, ok = r.string()
	case "host":
		f.Host, ok = r.string()
	case "header":
		f.Header, ok = r.header()
	case "content_length":
		f.ContentLength, ok = r.int()
	case "addr":
		f.Addr, ok = r.string()
	}
	return ok
}

type answerFields answerPayload

func (f *answerFields) member(r *fastReader, name string) bool {
	var ok bool
	switch name {
	case "status":
		var n int64
		n, ok = r.int()
		f.Status = int(n)
		ok = ok && int64(f.Status) == n
	case "header":
		f.Header, ok = r.header()
	case "content_length":
		f.ContentLength, ok = r.int()
	case "code":
		f.Code, ok = r.string()
	case "message":
		f.Message, ok = r.string()
	}
	return ok
}
