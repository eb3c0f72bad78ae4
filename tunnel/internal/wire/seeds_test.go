package wire

import (
	"bytes"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed files in testdata/frames at the repository root")

// seedDir holds the frame seeds, at the root of the repository.
const seedDir = "../../../testdata/frames"

// seedFrame is one seed file and what reading it as a request and as an answer
// must give.
type seedFrame struct {
	raw    []byte
	want   any              // for a valid frame: the *Request or *Answer it decodes to
	reject func(error) bool // for an invalid frame: the error it reads to, both ways
}

// seedFrames are the fuzz seeds in testdata/frames: every frame type, plus frames
// that must be refused.
func seedFrames(t testing.TB) map[string]seedFrame {
	out := map[string]seedFrame{}
	for _, tc := range frameCases() {
		out[tc.name+".frame"] = seedFrame{raw: mustAppend(t, tc.typ, tc.payload), want: tc.want}
	}
	v1, err := AppendVersion(nil, 1, TypeConnect, ConnectRequest{Addr: "example.com:443"})
	if err != nil {
		t.Fatal(err)
	}
	v3, err := AppendVersion(nil, 3, TypeConnect, ConnectRequest{Addr: "example.com:443"})
	if err != nil {
		t.Fatal(err)
	}
	mixed := `{"type":"http","payload":{"method":"GET","url":"http://example.com/","header":` +
		`{"content-type":["text/plain"],"Content-Type":["text/html"],"connection":["close"]},"content_length":0}}`
	for name, s := range map[string]seedFrame{
		"oversize.frame":    {raw: rawFrame(Version, math.MaxUint32, `{"type":"http"}`), reject: errIs(ErrHeaderTooLarge)},
		"garbage.frame":     {raw: []byte("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"), reject: errIs(ErrBadMagic)},
		"badversion.frame":  {raw: v1, reject: isVersion(1)},
		"version3.frame":    {raw: v3, reject: isVersion(3)},
		"badjson.frame":     {raw: frame(`{"type":"http","payload":{"method":`), reject: isMalformed},
		"notype.frame":      {raw: frame(`{"payload":{"addr":"example.com:443"}}`), reject: isMalformed},
		"duplicate.frame":   {raw: frame(`{"type":"connect","payload":{"addr":"example.com:443","addr":"10.0.0.1:22"}}`), reject: isMalformed},
		"unknowntype.frame": {raw: frame(`{"type":"control","payload":{}}`), reject: isUnknown("control")},
		"truncated.frame":   {raw: frame(`{"type":"connect","payload":{"addr":"example.com:443"}}`)[:20], reject: errIs(io.ErrUnexpectedEOF)},
		"mixedcase.frame": {raw: frame(mixed), want: &Request{Type: TypeHTTP, Payload: requestPayload{HTTPRequest: HTTPRequest{
			Method: "GET", URL: "http://example.com/",
			Header: map[string][]string{"Content-Type": {"text/html", "text/plain"}, "Connection": {"close"}},
		}}}},
	} {
		out[name] = s
	}
	return out
}

// TestSeedFiles keeps the seeds in testdata/frames in step with the code: run
// go test -run TestSeedFiles -update-seeds ./tunnel/internal/wire/ to rewrite them.
func TestSeedFiles(t *testing.T) {
	seeds := seedFrames(t)
	if *updateSeeds {
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range seeds {
		path := filepath.Join(seedDir, name)
		if *updateSeeds {
			if err := os.WriteFile(path, s.raw, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test -run TestSeedFiles -update-seeds ./tunnel/internal/wire/)", err)
			continue
		}
		if !bytes.Equal(got, s.raw) {
			t.Errorf("%s is out of date (run go test -run TestSeedFiles -update-seeds ./tunnel/internal/wire/)", path)
		}
	}
	// No stale seeds.
	paths, err := filepath.Glob(filepath.Join(seedDir, "*.frame"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, ok := seeds[filepath.Base(p)]; ok {
			continue
		}
		if *updateSeeds {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s is not a seed any more (run go test -run TestSeedFiles -update-seeds ./tunnel/internal/wire/)", p)
	}

	// The seed files read as they should.
	for name, s := range seeds {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(seedDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if s.want != nil {
				got := fresh(s.want)
				if err := Read(bytes.NewReader(raw), 0, got); err != nil || !reflect.DeepEqual(got, s.want) {
					t.Fatalf("decodes to %+v, %v; want %+v", got, err, s.want)
				}
				return
			}
			for _, v := range []decoder{&Request{}, &Answer{}} {
				if err := Read(bytes.NewReader(raw), 0, v); !s.reject(err) {
					t.Errorf("as %T: unexpected error %v", v, err)
				}
			}
		})
	}
}
