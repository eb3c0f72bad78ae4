package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed files in ../testdata")

// seedDir holds the fuzz seeds shared with the rest of the repository.
const seedDir = "../testdata"

// frameCase is one frame of every payload type the protocol defines.
type frameCase struct {
	name    string
	typ     string
	payload any
	decode  func() any // a fresh value of the payload's type
}

func frameCases() []frameCase {
	return []frameCase{
		{"http", TypeHTTP, HTTPRequest{Method: "POST", URL: "http://example.com/upload?x=1", Host: "virtual.example",
			Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}}, ContentLength: -1},
			func() any { return &HTTPRequest{} }},
		{"websocket", TypeWebSocket, HTTPRequest{Method: "GET", URL: "wss://example.com/ws",
			Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}}},
			func() any { return &HTTPRequest{} }},
		{"connect", TypeConnect, ConnectRequest{Addr: "example.com:443"}, func() any { return &ConnectRequest{} }},
		{"response", TypeResponse, HTTPResponse{Status: 200, Header: http.Header{"Content-Length": {"5"}}, ContentLength: 5},
			func() any { return &HTTPResponse{} }},
		{"connected", TypeConnected, struct{}{}, func() any { return &struct{}{} }},
		{"error", TypeError, RemoteError{Code: CodeRefused, Message: `egress policy refuses "metadata": link-local address`},
			func() any { return &RemoteError{} }},
	}
}

// rawFrame builds a frame by hand: magic, version, the given length and header.
func rawFrame(version byte, length uint32, header string) []byte {
	b := append([]byte("FLDY"), version, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[5:], length)
	return append(b, header...)
}

func frame(header string) []byte { return rawFrame(ProtocolVersion, uint32(len(header)), header) }

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			buf, err := AppendFrame([]byte("prefix"), tc.typ, tc.payload)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(buf, []byte("prefixFLDY\x01")) {
				t.Fatalf("AppendFrame did not append: %q", buf[:16])
			}
			var w countingWriter
			if err := WriteFrame(&w, tc.typ, tc.payload); err != nil {
				t.Fatal(err)
			}
			if w.writes != 1 || !bytes.Equal(w.Bytes(), buf[len("prefix"):]) {
				t.Fatalf("WriteFrame: %d writes, same bytes as AppendFrame: %v", w.writes, bytes.Equal(w.Bytes(), buf[6:]))
			}
			// The reader stops at the end of the frame: what follows is the body.
			r := bytes.NewReader(append(w.Bytes(), "BODY"...))
			env, err := ReadFrame(r, 0)
			if err != nil {
				t.Fatal(err)
			}
			if env.Type != tc.typ {
				t.Fatalf("type %q, want %q", env.Type, tc.typ)
			}
			got := tc.decode()
			if err := env.Decode(got); err != nil {
				t.Fatal(err)
			}
			if want := tc.payload; !reflect.DeepEqual(reflect.ValueOf(got).Elem().Interface(), want) {
				t.Fatalf("payload %+v, want %+v", got, want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "BODY" {
				t.Fatalf("ReadFrame consumed body bytes: rest %q", rest)
			}
		})
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

func TestFrameCaps(t *testing.T) {
	const limit = 1024
	header := `{"type":"connect","payload":{"addr":"` + strings.Repeat("a", limit) // trimmed below
	header = header[:limit-len(`:1"}}`)] + `:1"}}`
	if len(header) != limit {
		t.Fatalf("header is %d bytes", len(header))
	}
	if _, err := ReadFrame(bytes.NewReader(frame(header)), limit); err != nil {
		t.Fatalf("frame exactly at the cap: %v", err)
	}
	for _, n := range []uint32{limit + 1, 1 << 31, 0xffffffff} {
		r := &prefixOnlyReader{t: t, prefix: rawFrame(ProtocolVersion, n, "")}
		_, err := ReadFrame(r, limit)
		if !errors.Is(err, ErrHeaderTooLarge) {
			t.Errorf("length %d: %v, want ErrHeaderTooLarge", n, err)
		}
	}
	// maxHeader <= 0 means the default cap.
	big := frame(`{"type":"x","payload":"` + strings.Repeat("a", DefaultMaxHeaderSize) + `"}`)
	if _, err := ReadFrame(bytes.NewReader(big), 0); !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("default cap: %v", err)
	}
}

func TestFrameTruncated(t *testing.T) {
	full, err := AppendFrame(nil, TypeHTTP, frameCases()[0].payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(full); i++ {
		_, err := ReadFrame(bytes.NewReader(full[:i]), 0)
		want := io.ErrUnexpectedEOF
		if i == 0 {
			want = io.EOF
		}
		if err != want {
			t.Fatalf("truncated at %d of %d: %v, want %v", i, len(full), err, want)
		}
		// One byte at a time must behave the same (io.ReadFull, not a single Read).
		_, err = ReadFrame(iotest.OneByteReader(bytes.NewReader(full[:i])), 0)
		if err != want {
			t.Fatalf("one-byte reads, truncated at %d: %v", i, err)
		}
	}
	if _, err := ReadFrame(iotest.OneByteReader(bytes.NewReader(full)), 0); err != nil {
		t.Fatalf("one-byte reads of a whole frame: %v", err)
	}
}

func TestFrameMalformed(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
		want func(error) bool
	}{
		{"bad magic", append([]byte("HTTP"), frame(`{"type":"http"}`)[4:]...), is(ErrBadMagic)},
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), is(ErrBadMagic)},
		{"version 0", rawFrame(0, 2, "{}"), isVersion(0)},
		{"version 2", rawFrame(2, 2, "{}"), isVersion(2)},
		{"version 255", rawFrame(255, 0xffffffff, ""), isVersion(255)},
		{"garbage JSON", frame(`{type: http}`), is(ErrMalformedHeader)},
		{"empty header", frame(``), is(ErrMalformedHeader)},
		{"JSON array", frame(`["http"]`), is(ErrMalformedHeader)},
		{"JSON null", frame(`null`), is(ErrMalformedHeader)},
		{"missing type", frame(`{"payload":{"addr":"a:1"}}`), is(ErrMalformedHeader)},
		{"empty type", frame(`{"type":"","payload":{}}`), is(ErrMalformedHeader)},
		{"type not a string", frame(`{"type":7}`), is(ErrMalformedHeader)},
		{"trailing garbage", frame(`{"type":"http"} x`), is(ErrMalformedHeader)},
		// One header must not read two ways (smuggling between differing parsers).
		{"duplicate type", frame(`{"type":"http","type":"connect","payload":{}}`), is(ErrMalformedHeader)},
	}
	for _, tc := range cases {
		_, err := ReadFrame(bytes.NewReader(tc.raw), 0)
		if !tc.want(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Payload problems surface on Decode.
	env, err := ReadFrame(bytes.NewReader(frame(`{"type":"connect"}`)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Decode(&ConnectRequest{}); !errors.Is(err, ErrMalformedHeader) {
		t.Errorf("missing payload: %v", err)
	}
	env, _ = ReadFrame(bytes.NewReader(frame(`{"type":"connect","payload":{"addr":7}}`)), 0)
	if err := env.Decode(&ConnectRequest{}); !errors.Is(err, ErrMalformedHeader) {
		t.Errorf("wrong payload shape: %v", err)
	}
	env, _ = ReadFrame(bytes.NewReader(frame(`{"type":"connect","payload":{"addr":"a:1","addr":"b:2"}}`)), 0)
	if err := env.Decode(&ConnectRequest{}); !errors.Is(err, ErrMalformedHeader) {
		t.Errorf("duplicate payload member: %v", err)
	}
	// Unknown members are ignored (PROTOCOL.md, Versioning).
	env, err = ReadFrame(bytes.NewReader(frame(`{"type":"connect","future":1,"payload":{"addr":"a:1","new":true}}`)), 0)
	var cr ConnectRequest
	if err != nil || env.Decode(&cr) != nil || cr.Addr != "a:1" {
		t.Errorf("unknown members: %v %+v", err, cr)
	}
	// An unencodable payload leaves dst as it was.
	dst := []byte("keep")
	out, err := AppendFrame(dst, TypeHTTP, make(chan int))
	if err == nil || string(out) != "keep" {
		t.Errorf("unencodable payload: %q %v", out, err)
	}
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func isVersion(v byte) func(error) bool {
	return func(err error) bool {
		var ve *VersionError
		return errors.As(err, &ve) && ve.Version == v && strings.Contains(err.Error(), fmt.Sprint(v))
	}
}

// patterned returns n deterministic bytes.
func patterned(n int) []byte {
	b := make([]byte, n)
	fillPattern(b, 0)
	return b
}

func TestBodyRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 2, 100, 4095, 4096, 4097, 64<<10 - 12, 64 << 10, 64<<10 + 3, 300 << 10}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, n := range sizes {
		want := patterned(n)
		for _, length := range []int64{int64(n), -1} {
			for rname, wrap := range readers {
				if rname == "one byte" && n > 5000 {
					continue
				}
				var wire bytes.Buffer
				written, err := writeBody(&wire, wrap(bytes.NewReader(want)), length)
				if err != nil || written != int64(n) {
					t.Fatalf("n=%d length=%d %s: writeBody %d, %v", n, length, rname, written, err)
				}
				var r io.Reader = bodyReader(&wire, length)
				if rname != "data+EOF" { // DataErrReader drops data a reader returns with EOF
					r = wrap(r)
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("n=%d length=%d %s: read %d bytes, %v", n, length, rname, len(got), err)
				}
				if wire.Len() != 0 {
					t.Fatalf("n=%d length=%d %s: reader left %d bytes", n, length, rname, wire.Len())
				}
			}
		}
	}
}

func TestBodyErrors(t *testing.T) {
	// A fixed-length body whose source runs dry is an error on both ends.
	var wire bytes.Buffer
	if _, err := writeBody(&wire, strings.NewReader("short"), 10); !errors.Is(err, errShortBody) {
		t.Errorf("writeBody of a short source: %v", err)
	}
	if _, err := io.ReadAll(bodyReader(strings.NewReader("short"), 10)); err != io.ErrUnexpectedEOF {
		t.Errorf("reading a short fixed body: %v", err)
	}
	// A fixed-length reader never reads past its body.
	src := strings.NewReader("12345rest")
	if got, err := io.ReadAll(bodyReader(src, 5)); err != nil || string(got) != "12345" || src.Len() != 4 {
		t.Errorf("fixed body: %q %v, %d left", got, err, src.Len())
	}
	// Errors from the source are passed on.
	if _, err := writeBody(io.Discard, iotest.ErrReader(errTest), -1); !errors.Is(err, errTest) {
		t.Errorf("chunked source error: %v", err)
	}

	// Every proper prefix of a chunked body is an error, never a clean end.
	var full bytes.Buffer
	if _, err := writeBody(&full, iotest.HalfReader(bytes.NewReader(patterned(100))), -1); err != nil {
		t.Fatal(err)
	}
	b := full.Bytes()
	for i := 0; i < len(b); i++ {
		_, err := io.ReadAll(bodyReader(bytes.NewReader(b[:i]), -1))
		if err == nil {
			t.Fatalf("chunked body truncated at %d of %d read as complete", i, len(b))
		}
	}
	// The reader stops at the end of the body.
	src = strings.NewReader(string(b) + "next")
	if _, err := io.ReadAll(bodyReader(src, -1)); err != nil || src.Len() > 4 {
		t.Fatalf("chunked body: %v", err)
	}

	bad := map[string]string{
		"chunk extension":       "5;name=value\r\nhello\r\n0\r\n\r\n",
		"last-chunk extension":  "5\r\nhello\r\n0;x\r\n\r\n",
		"trailer":               "5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
		"bare LF":               "5\nhello\r\n0\r\n\r\n",
		"space before CRLF":     "5 \r\nhello\r\n0\r\n\r\n",
		"leading space":         " 5\r\nhello\r\n0\r\n\r\n",
		"sign":                  "+5\r\nhello\r\n0\r\n\r\n",
		"0x prefix":             "0x5\r\nhello\r\n0\r\n\r\n",
		"empty size":            "\r\nhello\r\n0\r\n\r\n",
		"not hex":               "zz\r\nhello\r\n0\r\n\r\n",
		"data longer than size": "3\r\nhello\r\n0\r\n\r\n",
		"data without CRLF":     "5\r\nhelloXX0\r\n\r\n",
		"huge size":             "fffffffffffffffff\r\n",
		"size over 2^62":        "7fffffffffffffff\r\nx",
		"long size line":        strings.Repeat("0", 5000) + "5\r\nhello\r\n0\r\n\r\n",
		"HTTP garbage":          "HTTP/1.1 200 OK\r\n\r\n",
		"nothing":               "",
	}
	for name, in := range bad {
		got, err := io.ReadAll(bodyReader(strings.NewReader(in), -1))
		if err == nil {
			t.Errorf("%s: accepted, read %q", name, got)
		}
		// The error sticks.
		r := bodyReader(strings.NewReader(in), -1)
		_, err1 := io.ReadAll(r)
		if _, err2 := r.Read(make([]byte, 10)); err2 == nil || err2 == io.EOF || (err1 != nil && err2 != err1) {
			t.Errorf("%s: error does not stick: %v then %v", name, err1, err2)
		}
	}
	// Upper-case hex and leading zeros are fine.
	if got, err := io.ReadAll(bodyReader(strings.NewReader("0A\r\n0123456789\r\n000\r\n\r\n"), -1)); err != nil || string(got) != "0123456789" {
		t.Errorf("upper-case hex: %q %v", got, err)
	}
}

// seedFrames are the fuzz seeds in testdata/frames: every frame type, plus frames
// that must be refused.
func seedFrames(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for _, tc := range frameCases() {
		b, err := AppendFrame(nil, tc.typ, tc.payload)
		if err != nil {
			t.Fatal(err)
		}
		out[tc.name+".frame"] = b
	}
	out["oversize.frame"] = rawFrame(ProtocolVersion, 0xffffffff, `{"type":"http"}`)
	out["garbage.frame"] = []byte("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
	out["badversion.frame"] = rawFrame(2, 15, `{"type":"http"}`)
	out["badjson.frame"] = frame(`{"type":"http","payload":{"method":`)
	out["notype.frame"] = frame(`{"payload":{"addr":"example.com:443"}}`)
	out["truncated.frame"] = frame(`{"type":"connect","payload":{"addr":"example.com:443"}}`)[:20]
	return out
}

func seedChunked() map[string][]byte {
	return map[string][]byte{
		"valid.chunked":     []byte("5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"),
		"empty.chunked":     []byte("0\r\n\r\n"),
		"extension.chunked": []byte("5;a=b\r\nhello\r\n0\r\n\r\n"),
		"trailer.chunked":   []byte("5\r\nhello\r\n0\r\nX: y\r\n\r\n"),
		"truncated.chunked": []byte("a\r\nhello"),
		"garbage.chunked":   []byte("HTTP/1.1 200 OK\r\n\r\n"),
	}
}

// TestSeedFiles keeps the seeds in testdata in step with the code: run with
// -update-seeds to rewrite them.
func TestSeedFiles(t *testing.T) {
	sets := map[string]map[string][]byte{"frames": seedFrames(t), "chunked": seedChunked()}
	for dir, files := range sets {
		for name, want := range files {
			path := filepath.Join(seedDir, dir, name)
			if *updateSeeds {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestSeedFiles -update-seeds ./tunnel/)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is out of date (run go test -run TestSeedFiles -update-seeds ./tunnel/)", path)
			}
		}
	}
	// The valid frame seeds decode.
	for _, tc := range frameCases() {
		b, _ := os.ReadFile(filepath.Join(seedDir, "frames", tc.name+".frame"))
		env, err := ReadFrame(bytes.NewReader(b), 0)
		if err != nil || env.Decode(tc.decode()) != nil {
			t.Errorf("seed %s does not decode: %v", tc.name, err)
		}
	}
}

// readSeeds returns the contents of the files matching pattern under testdata.
func readSeeds(f *testing.F, pattern string) [][]byte {
	paths, err := filepath.Glob(filepath.Join(seedDir, pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seeds for %s: %v", pattern, err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
