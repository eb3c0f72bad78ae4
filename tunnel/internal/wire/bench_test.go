package wire

import (
	"bytes"
	"net/http"
	"testing"
)

// benchRequest is a browser's GET as the agent forwards it, hop-by-hop headers removed.
var benchRequest = HTTPRequest{
	Method: "GET",
	URL:    "https://www.example.com/articles/2024/some-long-path?utm_source=feed&id=12345",
	Host:   "www.example.com",
	Header: http.Header{
		"Accept":                    {"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
		"Accept-Encoding":           {"gzip, deflate, br, zstd"},
		"Accept-Language":           {"en-GB,en;q=0.9,de;q=0.7"},
		"Cache-Control":             {"max-age=0"},
		"Cookie":                    {"session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.1234567890.1700000000"},
		"Dnt":                       {"1"},
		"Priority":                  {"u=0, i"},
		"Referer":                   {"https://www.example.com/"},
		"Sec-Ch-Ua":                 {`"Chromium";v="128", "Not;A=Brand";v="24", "Google Chrome";v="128"`},
		"Sec-Ch-Ua-Mobile":          {"?0"},
		"Sec-Ch-Ua-Platform":        {`"Linux"`},
		"Sec-Fetch-Dest":            {"document"},
		"Sec-Fetch-Mode":            {"navigate"},
		"Sec-Fetch-Site":            {"same-origin"},
		"Sec-Fetch-User":            {"?1"},
		"Upgrade-Insecure-Requests": {"1"},
		"User-Agent":                {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36"},
	},
}

func BenchmarkAppend(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 2048)
	for b.Loop() {
		var err error
		buf, err = Append(buf[:0], TypeHTTP, benchRequest)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkReadRequest(b *testing.B) {
	b.ReportAllocs()
	raw, err := Append(nil, TypeHTTP, benchRequest)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	r := bytes.NewReader(raw)
	for b.Loop() {
		r.Reset(raw)
		var req Request
		if err := Read(r, 0, &req); err != nil {
			b.Fatal(err)
		}
		if req.Type != TypeHTTP || len(req.HTTP().Header) != len(benchRequest.Header) {
			b.Fatalf("decoded %+v", req)
		}
	}
}
