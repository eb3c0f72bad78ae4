package wire

import (
	"bytes"
	"fmt"
	"net/http"
	"reflect"
	"testing"
)

// TestAppendFastMatchesGeneral: the fast encoder writes exactly what the
// general codec writes, or declines.
func TestAppendFastMatchesGeneral(t *testing.T) {
	many := http.Header{}
	for i := range 40 {
		many[fmt.Sprintf("X-H%02d", i)] = []string{fmt.Sprint(i)}
	}
	cases := []struct {
		name    string
		typ     string
		payload any
		fast    bool // the fast encoder must take it
	}{
		{"bench request", TypeHTTP, benchRequest, true},
		{"pointer", TypeHTTP, &benchRequest, true},
		{"no host no header", TypeHTTP, HTTPRequest{Method: "GET", URL: "http://a/"}, true},
		{"empty header", TypeHTTP, HTTPRequest{Method: "GET", URL: "http://a/", Header: http.Header{}}, true},
		{"nil and empty values", TypeHTTP, HTTPRequest{Method: "GET", URL: "http://a/", Header: http.Header{"A": nil, "B": {}}}, true},
		{"quotes, backslash, tab", TypeHTTP, HTTPRequest{Method: "GET", URL: `http://a/\`, Header: http.Header{"Sec-Ch-Ua": {`"Chromium";v="128"`, "a\tb"}}}, true},
		{"many headers", TypeHTTP, HTTPRequest{Method: "GET", URL: "http://a/", Header: many, ContentLength: -1}, true},
		{"response", TypeResponse, HTTPResponse{Status: 200, Header: http.Header{"Content-Length": {"5"}}, ContentLength: 5}, true},
		{"response pointer", TypeResponse, &HTTPResponse{Status: 204}, true},
		{"connect", TypeConnect, ConnectRequest{Addr: "example.com:443"}, true},
		{"connected", TypeConnected, struct{}{}, true},
		{"error", TypeError, Error{Code: "refused", Message: `policy "x"`}, true},
		{"error no message", TypeError, Error{Code: "dns"}, true},
		{"non-ASCII", TypeHTTP, HTTPRequest{Method: "GET", URL: "http://a/", Header: http.Header{"X": {"café"}}}, false},
		{"invalid UTF-8", TypeHTTP, HTTPRequest{Method: "GET", URL: "http://a/", Header: http.Header{"X": {"\xff"}}}, false},
		{"control", TypeError, Error{Code: "x", Message: "a\nb"}, false},
		{"HTML characters", TypeError, Error{Code: "x", Message: "<a>&"}, true},
		{"DEL", TypeConnect, ConnectRequest{Addr: "a\x7f:1"}, false},
		{"odd type", "ty\"pe", struct{}{}, false},
		{"other payload", TypeHTTP, map[string]int{"a": 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := appendGeneral(nil, tc.typ, tc.payload)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := appendFast(nil, tc.typ, tc.payload)
			if ok != tc.fast {
				t.Fatalf("fast encoder took it: %v, want %v", ok, tc.fast)
			}
			if ok && !bytes.Equal(got, want) {
				t.Fatalf("fast encoder wrote\n%s\nthe general codec\n%s", got, want)
			}
			// And Append writes the general codec's bytes either way.
			frame, err := Append(nil, tc.typ, tc.payload)
			if err != nil || !bytes.Equal(frame[PrefixSize:], want) {
				t.Fatalf("Append: %v\n%s\nwant\n%s", err, frame[PrefixSize:], want)
			}
		})
	}
}

// TestDecodeFastMatchesGeneral: on headers the fast decoder takes, it
// decodes what the general codec decodes; it declines the rest.
func TestDecodeFastMatchesGeneral(t *testing.T) {
	cases := []struct {
		header string
		fast   bool
	}{
		{string(mustAppend(t, TypeHTTP, benchRequest)[PrefixSize:]), true},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","header":{"A":null,"B":[],"C":["x\"y\\z\t"]},"content_length":-1}}`, true},
		{`{"payload":{"content_length":0,"url":"http://a/","method":"GET"},"type":"http"}`, true},
		{`{"type":"http","payload":null}`, true},
		{`{"type":"response","payload":{"status":200,"header":{"content-length":["5"]},"content_length":5}}`, true},
		{`{"type":"connected","payload":{}}`, true},
		{`{"type":"error","payload":{"code":"dns","message":"m"}}`, true},
		{`{"type":"connect","payload":{"addr":"a:1"}}`, true},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","content_length":-0}}`, false},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","content_length":01}}`, false},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","content_length":1e3}}`, false},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","content_length":99999999999999999999}}`, false},
		{`{"type":"http","payload":{"method":"GET","method":"PUT","url":"http://a/"}}`, false},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","header":{"A":["1"],"A":["2"]}}}`, false},
		{`{"type":"http","type":"http","payload":{}}`, false},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/","extra":1}}`, false},
		{`{"type":"http","payload":{"method":"G\u0045T","url":"http://a/"}}`, false},
		{`{"type":"http", "payload":{}}`, false},
		{`{"type":"http","payload":{}} `, false},
		{`{"type":"http","payload":{"method":"GÉT","url":"http://a/"}}`, false},
		{`{"type":"response","payload":{"status":99999999999}}`, true},
		{`{"type":"response","payload":{"status":200,"status":201}}`, false},
		{`{"type":"response","payload":{"method":"GET"}}`, true},
		{`{"type":null,"payload":{}}`, false},
		{`{"type":"http","payload":{"method":"GET","url":"http://a/"`, false},
		{`{}`, false},
	}
	for _, tc := range cases {
		took := false
		for _, newV := range []func() decoder{func() decoder { return &Request{} }, func() decoder { return &Answer{} }} {
			if decodeFast([]byte(tc.header), newV()) {
				took = true
			}
			checkFastDecode(t, []byte(tc.header), newV)
		}
		if took != tc.fast {
			t.Errorf("%s: fast decoder took it: %v, want %v", tc.header, took, tc.fast)
		}
	}
}

// checkFastDecode fails if the fast decoder reads body other than the general
// codec does.
func checkFastDecode(t *testing.T, body []byte, newV func() decoder) {
	fast, slow := newV(), newV()
	if !decodeFast(body, fast) {
		return
	}
	fastErr := fast.check()
	slowErr := decodeGeneral(body, slow)
	if (fastErr == nil) != (slowErr == nil) {
		t.Fatalf("%q into %T: fast decoder %v, general codec %v", body, fast, fastErr, slowErr)
	}
	if fastErr == nil && !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q into %T: fast decoder %#v, general codec %#v", body, fast, fast, slow)
	}
}

func BenchmarkReadAnswer(b *testing.B) {
	b.ReportAllocs()
	raw, err := Append(nil, TypeResponse, HTTPResponse{Status: 200, Header: http.Header{
		"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {"512"}, "Date": {"Tue, 01 Dec 2026 12:00:00 GMT"},
	}, ContentLength: 512})
	if err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(raw)
	for b.Loop() {
		r.Reset(raw)
		var a Answer
		if err := Read(r, 0, &a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCodec compares the fast codec with the general one on a browser's
// request and a small response.
func BenchmarkCodec(b *testing.B) {
	resp := HTTPResponse{Status: 200, Header: http.Header{
		"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {"512"}, "Date": {"Tue, 01 Dec 2026 12:00:00 GMT"},
	}, ContentLength: 512}
	for _, tc := range []struct {
		name    string
		typ     string
		payload any
		newV    func() decoder
	}{
		{"request", TypeHTTP, benchRequest, func() decoder { return &Request{} }},
		{"response", TypeResponse, resp, func() decoder { return &Answer{} }},
	} {
		body, err := appendGeneral(nil, tc.typ, tc.payload)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/general/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 2048)
			for b.Loop() {
				buf, _ = appendGeneral(buf[:0], tc.typ, tc.payload)
			}
		})
		b.Run("encode/fast/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 2048)
			for b.Loop() {
				buf, _ = appendFast(buf[:0], tc.typ, tc.payload)
			}
		})
		b.Run("decode/general/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v := tc.newV()
				if err := decodeGeneral(body, v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode/fast/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v := tc.newV()
				if !decodeFast(body, v) || v.check() != nil {
					b.Fatal("declined")
				}
			}
		})
	}
}
