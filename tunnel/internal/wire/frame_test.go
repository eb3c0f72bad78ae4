package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// frameCase is one frame of every type the protocol defines, with what it
// decodes to.
type frameCase struct {
	name    string
	typ     string
	payload any
	want    any // the *Request or *Answer the frame decodes to
}

func frameCases() []frameCase {
	httpReq := HTTPRequest{Method: "POST", URL: "http://example.com/upload?x=1", Host: "virtual.example",
		Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}}, ContentLength: -1}
	wsReq := HTTPRequest{Method: "GET", URL: "wss://example.com/ws",
		Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}}}
	connect := ConnectRequest{Addr: "example.com:443"}
	resp := HTTPResponse{Status: 200, Header: http.Header{"Content-Length": {"5"}}, ContentLength: 5}
	fail := Error{Code: "refused", Message: `egress policy refuses "metadata": link-local address`}
	return []frameCase{
		{"http", TypeHTTP, httpReq, &Request{Type: TypeHTTP, Payload: requestPayload{HTTPRequest: httpReq}}},
		{"websocket", TypeWebSocket, wsReq, &Request{Type: TypeWebSocket, Payload: requestPayload{HTTPRequest: wsReq}}},
		{"connect", TypeConnect, connect, &Request{Type: TypeConnect, Payload: requestPayload{ConnectRequest: connect}}},
		{"response", TypeResponse, resp, &Answer{Type: TypeResponse, Payload: answerPayload{HTTPResponse: resp}}},
		{"connected", TypeConnected, struct{}{}, &Answer{Type: TypeConnected}},
		{"error", TypeError, fail, &Answer{Type: TypeError, Payload: answerPayload{Error: fail}}},
	}
}

// decoder is a *Request or an *Answer.
type decoder = frameValue

// fresh returns a new zero value of the same type as v (a *Request or *Answer).
func fresh(v any) decoder {
	switch v.(type) {
	case *Request:
		return &Request{}
	case *Answer:
		return &Answer{}
	}
	panic(fmt.Sprintf("fresh(%T)", v))
}

// payloadOf returns the payload of a decoded frame through the accessor its
// type calls for, as the tunnel reads it; nil for a type the value does not carry.
func payloadOf(v any) any {
	switch v := v.(type) {
	case *Request:
		switch v.Type {
		case TypeHTTP, TypeWebSocket:
			return *v.HTTP()
		case TypeConnect:
			return *v.Connect()
		}
	case *Answer:
		switch v.Type {
		case TypeResponse:
			return *v.Response()
		case TypeError:
			return *v.Err()
		case TypeConnected:
			return struct{}{}
		}
	}
	return nil
}

// typeOf returns the frame type of a decoded *Request or *Answer.
func typeOf(v any) string {
	switch v := v.(type) {
	case *Request:
		return v.Type
	case *Answer:
		return v.Type
	}
	return ""
}

// rawFrame builds a frame by hand: magic, version, the given length and header.
func rawFrame(version byte, length uint32, header string) []byte {
	b := append([]byte("FLDY"), version, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[5:], length)
	return append(b, header...)
}

// vframe builds a frame of the given version around a JSON header.
func vframe(version byte, header string) []byte {
	return rawFrame(version, uint32(len(header)), header)
}

// frame builds a version 2 frame around a JSON header.
func frame(header string) []byte { return vframe(Version, header) }

func mustAppend(t testing.TB, typ string, payload any) []byte {
	t.Helper()
	b, err := Append(nil, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			buf, err := Append([]byte("prefix"), tc.typ, tc.payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf, []byte("prefixFLDY\x02")) {
				t.Fatalf("Append did not append a version 2 frame: %q", buf[:min(len(buf), 16)])
			}
			fr := buf[len("prefix"):]
			if n := binary.BigEndian.Uint32(fr[5:PrefixSize]); int(n) != len(fr)-PrefixSize {
				t.Fatalf("length field %d, header is %d bytes", n, len(fr)-PrefixSize)
			}
			// The encoding is deterministic (header maps are written sorted).
			for range 20 {
				if again := mustAppend(t, tc.typ, tc.payload); !bytes.Equal(again, fr) {
					t.Fatalf("Append is not deterministic:\n%q\n%q", fr, again)
				}
			}
			var w countingWriter
			if err := Write(&w, tc.typ, tc.payload); err != nil {
				t.Fatal(err)
			}
			if w.writes != 1 || !bytes.Equal(w.Bytes(), fr) {
				t.Fatalf("Write: %d writes, same bytes as Append: %v", w.writes, bytes.Equal(w.Bytes(), fr))
			}

			// The reader stops at the end of the frame: what follows is the body.
			r := bytes.NewReader(append(bytes.Clone(fr), "BODY"...))
			got := fresh(tc.want)
			if err := Read(r, 0, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded %+v, want %+v", got, tc.want)
			}
			if p := payloadOf(got); !reflect.DeepEqual(p, tc.payload) {
				t.Fatalf("payload %+v, want %+v", p, tc.payload)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "BODY" {
				t.Fatalf("Read consumed body bytes: rest %q", rest)
			}

			// ReadHeader then Decode is the same as Read.
			hdr, err := ReadHeader(bytes.NewReader(fr), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hdr, fr[PrefixSize:]) {
				t.Fatalf("ReadHeader returned %q, want %q", hdr, fr[PrefixSize:])
			}
			got2 := fresh(tc.want)
			if err := Decode(hdr, got2); err != nil || !reflect.DeepEqual(got2, tc.want) {
				t.Fatalf("Decode: %+v, %v", got2, err)
			}
		})
	}
}

// TestFrameWrongDirection: a request frame is an unknown type to the answer
// reader and the other way round.
func TestFrameWrongDirection(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			var other decoder = &Request{}
			if _, ok := tc.want.(*Request); ok {
				other = &Answer{}
			}
			err := Read(bytes.NewReader(mustAppend(t, tc.typ, tc.payload)), 0, other)
			var ute *UnknownTypeError
			if !errors.As(err, &ute) || ute.Type != tc.typ || !errors.Is(err, ErrMalformed) {
				t.Fatalf("%T: %v, want UnknownTypeError{%q}", other, err, tc.typ)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	var req Request
	req.HTTP().Method = "GET"
	req.Connect().Addr = "a:1"
	if req.Payload.Method != "GET" || req.Payload.Addr != "a:1" {
		t.Errorf("request accessors do not point into the payload: %+v", req)
	}
	var ans Answer
	ans.Response().Status = 204
	ans.Err().Code = "dns"
	if ans.Payload.Status != 204 || ans.Payload.Code != "dns" {
		t.Errorf("answer accessors do not point into the payload: %+v", ans)
	}
}

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// prefixOnlyReader serves a frame's 9-byte prefix and fails the test if anything
// reads further.
type prefixOnlyReader struct {
	t      *testing.T
	prefix []byte
}

func (r *prefixOnlyReader) Read(p []byte) (int, error) {
	if len(r.prefix) == 0 {
		r.t.Error("read past the prefix of an oversized frame")
		return 0, errors.New("read past prefix")
	}
	n := copy(p, r.prefix)
	r.prefix = r.prefix[n:]
	return n, nil
}

// connectHeader returns a valid connect header of exactly n bytes.
func connectHeader(t *testing.T, n int) string {
	t.Helper()
	const head, tail = `{"type":"connect","payload":{"addr":"`, `:1"}}`
	if n < len(head)+len(tail)+1 {
		t.Fatalf("connect header cannot be %d bytes", n)
	}
	h := head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	if len(h) != n {
		t.Fatalf("header is %d bytes, want %d", len(h), n)
	}
	return h
}

func TestFrameCaps(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name      string
		maxHeader int
		cap       int // the cap maxHeader stands for
	}{
		{"explicit", limit, limit},
		{"zero is the default", 0, DefaultMaxHeaderSize},
		{"negative is the default", -1, DefaultMaxHeaderSize},
		{"min int is the default", math.MinInt, DefaultMaxHeaderSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Exactly at the cap is fine.
			var req Request
			if err := Read(bytes.NewReader(frame(connectHeader(t, tc.cap))), tc.maxHeader, &req); err != nil {
				t.Fatalf("frame exactly at the cap: %v", err)
			}
			if want := tc.cap - len(`{"type":"connect","payload":{"addr":"`) - len(`"}}`); len(req.Connect().Addr) != want {
				t.Fatalf("addr is %d bytes, want %d", len(req.Connect().Addr), want)
			}
			// Above it, the header is refused without being read.
			for _, n := range []uint32{uint32(tc.cap) + 1, 1 << 31, math.MaxUint32} {
				r := &prefixOnlyReader{t: t, prefix: rawFrame(Version, n, "")}
				_, err := ReadHeader(r, tc.maxHeader)
				if !errors.Is(err, ErrHeaderTooLarge) {
					t.Errorf("length %d: %v, want ErrHeaderTooLarge", n, err)
				}
				if err != nil && !strings.Contains(err.Error(), fmt.Sprint(n)) {
					t.Errorf("length %d: error %q does not name the length", n, err)
				}
				r = &prefixOnlyReader{t: t, prefix: rawFrame(Version, n, "")}
				if err := Read(r, tc.maxHeader, &Request{}); !errors.Is(err, ErrHeaderTooLarge) {
					t.Errorf("Read, length %d: %v, want ErrHeaderTooLarge", n, err)
				}
			}
		})
	}
}

// TestFrameCapNoAllocation: refusing a frame that claims 4 GiB allocates next
// to nothing.
func TestFrameCapNoAllocation(t *testing.T) {
	raw := rawFrame(Version, math.MaxUint32, "")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadHeader(bytes.NewReader(raw), 0); !errors.Is(err, ErrHeaderTooLarge) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("refusing 10 oversized frames allocated %d bytes", d)
	}
}

func TestFrameTruncated(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data+EOF", iotest.DataErrReader},
	}
	for _, tc := range frameCases() {
		full := mustAppend(t, tc.typ, tc.payload)
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				for i := range len(full) {
					err := Read(rd.wrap(bytes.NewReader(full[:i])), 0, fresh(tc.want))
					want := io.ErrUnexpectedEOF
					if i == 0 {
						want = io.EOF
					}
					if !errors.Is(err, want) {
						t.Fatalf("truncated at %d of %d: %v, want %v", i, len(full), err, want)
					}
				}
				got := fresh(tc.want)
				if err := Read(rd.wrap(bytes.NewReader(full)), 0, got); err != nil || !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("whole frame: %+v, %v", got, err)
				}
			})
		}
	}
}

// errIs, isVersion and isUnknown are checks on the error a frame reads to.
func errIs(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func isVersion(v byte) func(error) bool {
	return func(err error) bool {
		var ve *VersionError
		return errors.As(err, &ve) && ve.Version == v && strings.Contains(err.Error(), fmt.Sprint(v)) &&
			!errors.Is(err, ErrMalformed)
	}
}

func isUnknown(typ string) func(error) bool {
	return func(err error) bool {
		var ute *UnknownTypeError
		return errors.As(err, &ute) && ute.Type == typ && errors.Is(err, ErrMalformed) &&
			strings.Contains(err.Error(), fmt.Sprintf("%q", typ))
	}
}

// isMalformed is ErrMalformed that is not an UnknownTypeError, nor (an
// unterminated JSON header inside a whole frame) the io.ErrUnexpectedEOF of a
// stream cut short, which the server drops without an answer.
func isMalformed(err error) bool {
	var ute *UnknownTypeError
	return errors.Is(err, ErrMalformed) && !errors.As(err, &ute) && !errors.Is(err, io.ErrUnexpectedEOF)
}

func TestFrameMalformed(t *testing.T) {
	const (
		req = iota // read as a Request
		ans        // read as an Answer
	)
	const okHTTP = `"method":"GET","url":"http://example.com/"`
	cases := []struct {
		name string
		as   int
		raw  []byte
		want func(error) bool
	}{
		// Prefix.
		{"bad magic", req, append([]byte("HTTP"), frame(`{"type":"connect","payload":{"addr":"a:1"}}`)[4:]...), errIs(ErrBadMagic)},
		{"lower-case magic", req, append([]byte("fldy"), frame(`{"type":"connect","payload":{"addr":"a:1"}}`)[4:]...), errIs(ErrBadMagic)},
		{"HTTP request", req, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), errIs(ErrBadMagic)},
		{"TLS hello", ans, []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), errIs(ErrBadMagic)},
		{"version 0", req, vframe(0, "{}"), isVersion(0)},
		{"version 1", req, vframe(1, `{"type":"connect","payload":{"addr":"a:1"}}`), isVersion(1)},
		{"version 1 answer", ans, vframe(1, `{"type":"connected","payload":{}}`), isVersion(1)},
		{"version 3", req, vframe(3, "{}"), isVersion(3)},
		{"version 255", req, vframe(255, "{}"), isVersion(255)},
		// The version is checked before the length.
		{"version 255 oversized", req, rawFrame(255, math.MaxUint32, ""), isVersion(255)},
		{"version 1 oversized", ans, rawFrame(1, math.MaxUint32, ""), isVersion(1)},

		// Not one JSON object.
		{"garbage JSON", req, frame(`{type: http}`), isMalformed},
		{"empty header", req, frame(``), isMalformed},
		{"empty header answer", ans, frame(``), isMalformed},
		{"whitespace header", req, frame(" \n"), isMalformed},
		{"JSON array", req, frame(`["http"]`), isMalformed},
		{"JSON null", req, frame(`null`), isMalformed},
		{"JSON null answer", ans, frame(`null`), isMalformed},
		{"JSON string", req, frame(`"connect"`), isMalformed},
		{"JSON number", ans, frame(`200`), isMalformed},
		{"unterminated", req, frame(`{"type":"connect","payload":{"addr":"a:1"}`), isMalformed},
		{"trailing garbage", req, frame(`{"type":"connect","payload":{"addr":"a:1"}} x`), isMalformed},
		{"two objects", req, frame(`{"type":"connect","payload":{"addr":"a:1"}}{"type":"connect","payload":{"addr":"b:2"}}`), isMalformed},
		{"trailing comma", req, frame(`{"type":"connect","payload":{"addr":"a:1"},}`), isMalformed},

		// The type.
		{"missing type", req, frame(`{"payload":{"addr":"a:1"}}`), isMalformed},
		{"missing type answer", ans, frame(`{"payload":{"status":200}}`), isMalformed},
		{"empty type", req, frame(`{"type":"","payload":{"addr":"a:1"}}`), isMalformed},
		{"null type", req, frame(`{"type":null,"payload":{"addr":"a:1"}}`), isMalformed},
		{"type not a string", req, frame(`{"type":7,"payload":{"addr":"a:1"}}`), isMalformed},
		{"type an object", ans, frame(`{"type":{"name":"connected"}}`), isMalformed},
		// Member names are matched exactly: "Type" is an unknown member.
		{"capitalised type", req, frame(`{"Type":"connect","payload":{"addr":"a:1"}}`), isMalformed},

		// One header must not read two ways (smuggling between differing parsers).
		{"duplicate type", req, frame(`{"type":"http","type":"connect","payload":{"addr":"a:1"}}`), isMalformed},
		{"duplicate type escaped", req, frame(`{"type":"connect","\u0074ype":"http","payload":{"addr":"a:1"}}`), isMalformed},
		{"duplicate payload", req, frame(`{"type":"connect","payload":{"addr":"a:1"},"payload":{"addr":"b:2"}}`), isMalformed},
		{"duplicate payload member", req, frame(`{"type":"connect","payload":{"addr":"a:1","addr":"b:2"}}`), isMalformed},
		{"duplicate payload member escaped", req, frame(`{"type":"connect","payload":{"addr":"a:1","\u0061ddr":"b:2"}}`), isMalformed},
		{"duplicate header name", req, frame(`{"type":"http","payload":{` + okHTTP + `,"header":{"A":["1"],"A":["2"]}}}`), isMalformed},
		{"duplicate status", ans, frame(`{"type":"response","payload":{"status":200,"status":500}}`), isMalformed},
		{"duplicate code", ans, frame(`{"type":"error","payload":{"code":"dns","code":"refused"}}`), isMalformed},
		{"duplicate in unknown member", req, frame(`{"type":"connect","x":{"a":1,"a":2},"payload":{"addr":"a:1"}}`), isMalformed},
		{"duplicate unknown member", ans, frame(`{"type":"connected","x":1,"x":2}`), isMalformed},

		// Payload shape.
		{"payload a number", req, frame(`{"type":"connect","payload":7}`), isMalformed},
		{"payload a string", ans, frame(`{"type":"connected","payload":"x"}`), isMalformed},
		{"payload an array", ans, frame(`{"type":"connected","payload":[]}`), isMalformed},
		{"addr a number", req, frame(`{"type":"connect","payload":{"addr":7}}`), isMalformed},
		{"method a number", req, frame(`{"type":"http","payload":{"method":1,"url":"http://x/"}}`), isMalformed},
		{"header an array", req, frame(`{"type":"http","payload":{` + okHTTP + `,"header":["A: 1"]}}`), isMalformed},
		{"header value a string", req, frame(`{"type":"http","payload":{` + okHTTP + `,"header":{"A":"1"}}}`), isMalformed},
		{"header value a number", ans, frame(`{"type":"response","payload":{"status":200,"header":{"A":[1]}}}`), isMalformed},
		{"content_length a string", req, frame(`{"type":"http","payload":{` + okHTTP + `,"content_length":"5"}}`), isMalformed},
		{"content_length a fraction", req, frame(`{"type":"http","payload":{` + okHTTP + `,"content_length":1.5}}`), isMalformed},
		{"content_length overflows", ans, frame(`{"type":"response","payload":{"status":200,"content_length":9223372036854775808}}`), isMalformed},
		{"status a string", ans, frame(`{"type":"response","payload":{"status":"200"}}`), isMalformed},
		{"status a float", ans, frame(`{"type":"response","payload":{"status":200.5}}`), isMalformed},
		{"status overflows", ans, frame(`{"type":"response","payload":{"status":99999999999999999999}}`), isMalformed},
		{"code a number", ans, frame(`{"type":"error","payload":{"code":1}}`), isMalformed},

		// Required members.
		{"connect without payload", req, frame(`{"type":"connect"}`), isMalformed},
		{"connect with null payload", req, frame(`{"type":"connect","payload":null}`), isMalformed},
		{"connect without addr", req, frame(`{"type":"connect","payload":{}}`), isMalformed},
		{"connect with empty addr", req, frame(`{"type":"connect","payload":{"addr":""}}`), isMalformed},
		{"connect with capitalised addr", req, frame(`{"type":"connect","payload":{"Addr":"a:1"}}`), isMalformed},
		{"http without payload", req, frame(`{"type":"http"}`), isMalformed},
		{"http without method", req, frame(`{"type":"http","payload":{"url":"http://x/"}}`), isMalformed},
		{"http without url", req, frame(`{"type":"http","payload":{"method":"GET"}}`), isMalformed},
		{"http with empty method", req, frame(`{"type":"http","payload":{"method":"","url":"http://x/"}}`), isMalformed},
		{"websocket without method", req, frame(`{"type":"websocket","payload":{"url":"ws://x/"}}`), isMalformed},
		{"websocket without url", req, frame(`{"type":"websocket","payload":{"method":"GET"}}`), isMalformed},
		{"http content_length -2", req, frame(`{"type":"http","payload":{` + okHTTP + `,"content_length":-2}}`), isMalformed},
		{"http content_length min int64", req, frame(`{"type":"http","payload":{` + okHTTP + `,"content_length":-9223372036854775808}}`), isMalformed},
		{"websocket content_length -2", req, frame(`{"type":"websocket","payload":{` + okHTTP + `,"content_length":-2}}`), isMalformed},
		{"response without payload", ans, frame(`{"type":"response"}`), isMalformed},
		{"response without status", ans, frame(`{"type":"response","payload":{}}`), isMalformed},
		{"response status 0", ans, frame(`{"type":"response","payload":{"status":0}}`), isMalformed},
		{"response status 99", ans, frame(`{"type":"response","payload":{"status":99}}`), isMalformed},
		{"response status 1000", ans, frame(`{"type":"response","payload":{"status":1000}}`), isMalformed},
		{"response status -200", ans, frame(`{"type":"response","payload":{"status":-200}}`), isMalformed},
		{"response content_length -2", ans, frame(`{"type":"response","payload":{"status":200,"content_length":-2}}`), isMalformed},
		{"error without payload", ans, frame(`{"type":"error"}`), isMalformed},
		{"error without code", ans, frame(`{"type":"error","payload":{"message":"no code"}}`), isMalformed},
		{"error with empty code", ans, frame(`{"type":"error","payload":{"code":""}}`), isMalformed},

		// Well-formed frames of a type the reader does not expect.
		{"unknown request type", req, frame(`{"type":"control","payload":{}}`), isUnknown("control")},
		{"unknown answer type", ans, frame(`{"type":"abort","payload":{"stream":3}}`), isUnknown("abort")},
		{"capitalised type value", req, frame(`{"type":"CONNECT","payload":{"addr":"a:1"}}`), isUnknown("CONNECT")},
		{"answer type as request", req, frame(`{"type":"connected","payload":{}}`), isUnknown("connected")},
		{"request type as answer", ans, frame(`{"type":"connect","payload":{"addr":"a:1"}}`), isUnknown("connect")},
		{"unknown type without payload", ans, frame(`{"type":"future"}`), isUnknown("future")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v decoder = &Request{}
			if tc.as == ans {
				v = &Answer{}
			}
			if err := Read(bytes.NewReader(tc.raw), 0, v); !tc.want(err) {
				t.Errorf("%T: unexpected error %v", v, err)
			}
		})
	}
}

// TestFrameAccepted: edge cases that are valid, unknown members included
// (PROTOCOL.md, Versioning).
func TestFrameAccepted(t *testing.T) {
	cases := []struct {
		name   string
		header string
		want   any
	}{
		{"unknown members", `{"type":"connect","future":{"x":[1,2]},"payload":{"addr":"a:1","new":true}}`,
			&Request{Type: TypeConnect, Payload: requestPayload{ConnectRequest: ConnectRequest{Addr: "a:1"}}}},
		{"unknown member before type", `{"zzz":null,"payload":{"addr":"a:1"},"type":"connect"}`,
			&Request{Type: TypeConnect, Payload: requestPayload{ConnectRequest: ConnectRequest{Addr: "a:1"}}}},
		{"capitalised member ignored", `{"type":"connect","Type":"http","payload":{"addr":"a:1"}}`,
			&Request{Type: TypeConnect, Payload: requestPayload{ConnectRequest: ConnectRequest{Addr: "a:1"}}}},
		{"whitespace", " \t\r\n{ \"type\" : \"connect\" , \"payload\" : { \"addr\" : \"a:1\" } }\n",
			&Request{Type: TypeConnect, Payload: requestPayload{ConnectRequest: ConnectRequest{Addr: "a:1"}}}},
		{"escaped strings", `{"type":"\u0063onnect","payload":{"addr":"\u0061:1"}}`,
			&Request{Type: TypeConnect, Payload: requestPayload{ConnectRequest: ConnectRequest{Addr: "a:1"}}}},
		{"http members of other types ignored", `{"type":"http","payload":{"method":"GET","url":"/","status":7,"code":"x"}}`,
			&Request{Type: TypeHTTP, Payload: requestPayload{HTTPRequest: HTTPRequest{Method: "GET", URL: "/", Header: http.Header{}}}}},
		{"http content_length -1", `{"type":"http","payload":{"method":"PUT","url":"/","content_length":-1}}`,
			&Request{Type: TypeHTTP, Payload: requestPayload{HTTPRequest: HTTPRequest{Method: "PUT", URL: "/", Header: http.Header{}, ContentLength: -1}}}},
		{"http content_length max", `{"type":"http","payload":{"method":"PUT","url":"/","content_length":9223372036854775807}}`,
			&Request{Type: TypeHTTP, Payload: requestPayload{HTTPRequest: HTTPRequest{Method: "PUT", URL: "/", Header: http.Header{}, ContentLength: math.MaxInt64}}}},
		{"websocket with host", `{"type":"websocket","payload":{"method":"GET","url":"ws://x/","host":"y"}}`,
			&Request{Type: TypeWebSocket, Payload: requestPayload{HTTPRequest: HTTPRequest{Method: "GET", URL: "ws://x/", Host: "y", Header: http.Header{}}}}},
		{"status 100", `{"type":"response","payload":{"status":100}}`,
			&Answer{Type: TypeResponse, Payload: answerPayload{HTTPResponse: HTTPResponse{Status: 100, Header: http.Header{}}}}},
		{"status 999", `{"type":"response","payload":{"status":999,"content_length":-1}}`,
			&Answer{Type: TypeResponse, Payload: answerPayload{HTTPResponse: HTTPResponse{Status: 999, Header: http.Header{}, ContentLength: -1}}}},
		{"response unknown members", `{"type":"response","payload":{"status":204,"reason":"No Content"},"trace":"x"}`,
			&Answer{Type: TypeResponse, Payload: answerPayload{HTTPResponse: HTTPResponse{Status: 204, Header: http.Header{}}}}},
		{"connected without payload", `{"type":"connected"}`, &Answer{Type: TypeConnected}},
		{"connected with null payload", `{"type":"connected","payload":null}`, &Answer{Type: TypeConnected}},
		{"connected with unknown payload members", `{"type":"connected","payload":{"local":"10.0.0.1:5000"}}`, &Answer{Type: TypeConnected}},
		{"error without message", `{"type":"error","payload":{"code":"shutting_down"}}`,
			&Answer{Type: TypeError, Payload: answerPayload{Error: Error{Code: "shutting_down"}}}},
		{"error with unknown code", `{"type":"error","payload":{"code":"from_the_future","message":"m"}}`,
			&Answer{Type: TypeError, Payload: answerPayload{Error: Error{Code: "from_the_future", Message: "m"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := fresh(tc.want)
			if err := Read(bytes.NewReader(frame(tc.header)), 0, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAppendUnencodable(t *testing.T) {
	cases := []struct {
		name    string
		payload any
	}{
		{"chan", make(chan int)},
		{"func", func() {}},
		{"NaN", math.NaN()},
		{"nested chan", map[string]any{"a": make(chan int)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Spare capacity: Append must not leave anything visible in dst either way.
			dst := append(make([]byte, 0, 64), "keep"...)
			out, err := Append(dst, TypeHTTP, tc.payload)
			if err == nil || string(out) != "keep" {
				t.Errorf("Append: %q, %v", out, err)
			}
			if err != nil && !strings.Contains(err.Error(), TypeHTTP) {
				t.Errorf("error %q does not name the frame type", err)
			}
			out, err = AppendVersion([]byte("keep"), 1, TypeHTTP, tc.payload)
			if err == nil || string(out) != "keep" {
				t.Errorf("AppendVersion: %q, %v", out, err)
			}
			var w countingWriter
			if err := Write(&w, TypeHTTP, tc.payload); err == nil || w.writes != 0 {
				t.Errorf("Write: %d writes, %v", w.writes, err)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	errTest := errors.New("test write error")
	err := Write(errWriter{errTest}, TypeConnected, struct{}{})
	if !errors.Is(err, errTest) {
		t.Fatalf("Write: %v, want the writer's error", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

func TestAppendVersion(t *testing.T) {
	payload := Error{Code: "unsupported_version", Message: "this server speaks version 2"}
	v2 := mustAppend(t, TypeError, payload)
	for _, v := range []byte{0, 1, 2, 3, 255} {
		t.Run(fmt.Sprint("version ", v), func(t *testing.T) {
			b, err := AppendVersion([]byte("x"), v, TypeError, payload)
			if err != nil {
				t.Fatal(err)
			}
			b = b[1:]
			if string(b[:4]) != "FLDY" || b[4] != v {
				t.Fatalf("prefix %q, want version byte %d", b[:5], v)
			}
			// Only the version byte differs from Append's frame.
			if !bytes.Equal(b[:4], v2[:4]) || !bytes.Equal(b[5:], v2[5:]) {
				t.Fatalf("AppendVersion(%d) differs from Append beyond the version byte:\n%q\n%q", v, b, v2)
			}
			_, err = ReadHeader(bytes.NewReader(b), 0)
			if v == Version {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *VersionError
			if !errors.As(err, &ve) || *ve != (VersionError{Version: v}) {
				t.Fatalf("ReadHeader: %v, want VersionError{%d}", err, v)
			}
			if want := fmt.Sprintf("tunnel: unsupported protocol version %d", v); err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
		})
	}
}

// TestReadKeepsNothingOfItsBuffer: Read decodes from a pooled buffer, which
// the next Read overwrites; what the first decoded must not change. Every
// frame case, each read back after many others went through the pool.
func TestReadKeepsNothingOfItsBuffer(t *testing.T) {
	cases := frameCases()
	got := make([]any, len(cases))
	for i, tc := range cases {
		got[i] = fresh(tc.want)
		if err := Read(bytes.NewReader(mustAppend(t, tc.typ, tc.payload)), 0, got[i].(frameValue)); err != nil {
			t.Fatal(err)
		}
	}
	// Frames of the same sizes with other bytes, through the same buffers.
	for range 4 {
		for _, tc := range cases {
			fr := mustAppend(t, tc.typ, tc.payload)
			var junk Answer
			_ = Read(bytes.NewReader(append(fr[:PrefixSize:PrefixSize], bytes.Repeat([]byte{'x'}, len(fr)-PrefixSize)...)), 0, &junk)
		}
	}
	for i, tc := range cases {
		if !reflect.DeepEqual(got[i], tc.want) {
			t.Errorf("%s: after further reads decoded %+v, want %+v", tc.name, got[i], tc.want)
		}
	}
}
