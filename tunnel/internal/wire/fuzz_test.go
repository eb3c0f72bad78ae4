package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// fuzzLimit is the header cap the fuzz targets read with.
const fuzzLimit = 4096

// addSeeds seeds f with the frames in testdata/frames, the frames of every type
// as Append writes them, and a few edge cases.
func addSeeds(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join(seedDir, "*.frame"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seeds in %s: %v", seedDir, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tc := range frameCases() {
		f.Add(mustAppend(f, tc.typ, tc.payload))
	}
	for _, h := range []string{
		`{"type":"http","payload":{"method":"GET","url":"/","header":{"a":[],"A":null,"b":["\u0000"]}}}`,
		`{"type":"websocket","payload":{"method":"GET","url":"ws://x/","header":{"x-a":["1"],"X-a":["2"]},"content_length":-1}}`,
		`{"type":"response","payload":{"status":101,"header":{"upgrade":["websocket"]},"content_length":-1}}`,
		`{"type":"error","payload":{"code":"dns","message":"caf\u00e9 \ud800"}}`,
		"{\"type\":\"connect\",\"payload\":{\"addr\":\"\xff:1\"}}",
		`{"type":"connected","payload":null,"extra":[1,{"a":2}]}`,
	} {
		f.Add(frame(h))
	}
	f.Add(rawFrame(Version, fuzzLimit, ""))
	f.Add(rawFrame(Version, fuzzLimit+1, ""))
}

// FuzzReadRequest: no input makes Read panic, read past the frame or allocate
// beyond its cap, and every request it accepts encodes again to a frame it reads
// back the same.
func FuzzReadRequest(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, data, func() decoder { return &Request{} })
	})
}

// FuzzReadAnswer is FuzzReadRequest for the server's answers.
func FuzzReadAnswer(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, data, func() decoder { return &Answer{} })
	})
}

func fuzzRead(t *testing.T, data []byte, newV func() decoder) {
	r := bytes.NewReader(data)
	v := newV()
	err := Read(r, fuzzLimit, v)
	used := len(data) - r.Len()

	// How much is read, and the error, follow from the prefix alone.
	switch {
	case len(data) == 0:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("empty input: %v, want EOF", err)
		}
		return
	case len(data) < PrefixSize:
		if !errors.Is(err, io.ErrUnexpectedEOF) || used != len(data) {
			t.Fatalf("%d-byte input: %v after %d bytes, want unexpected EOF", len(data), err, used)
		}
		return
	}
	length := binary.BigEndian.Uint32(data[5:PrefixSize])
	switch {
	case !bytes.Equal(data[:4], []byte("FLDY")):
		if !errors.Is(err, ErrBadMagic) || used != PrefixSize {
			t.Fatalf("bad magic: %v after %d bytes", err, used)
		}
		return
	case data[4] != Version:
		var ve *VersionError
		if !errors.As(err, &ve) || ve.Version != data[4] || used != PrefixSize {
			t.Fatalf("version %d: %v after %d bytes", data[4], err, used)
		}
		return
	case length > fuzzLimit:
		if !errors.Is(err, ErrHeaderTooLarge) || used != PrefixSize {
			t.Fatalf("oversized frame (%d bytes): %v after reading %d bytes", length, err, used)
		}
		return
	case len(data) < PrefixSize+int(length):
		if !errors.Is(err, io.ErrUnexpectedEOF) || used != len(data) {
			t.Fatalf("truncated frame: %v after %d of %d bytes", err, used, len(data))
		}
		return
	}
	if want := PrefixSize + int(length); used != want {
		t.Fatalf("consumed %d bytes of a %d-byte frame", used, want)
	}
	checkFastDecode(t, data[PrefixSize:used], newV)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("complete frame: untyped error %v", err)
		}
		var ute *UnknownTypeError
		if errors.As(err, &ute) && payloadOf(v) != nil {
			t.Fatalf("UnknownTypeError for known type %q", ute.Type)
		}
		return
	}

	// Accepted.
	typ, p := typeOf(v), payloadOf(v)
	if p == nil {
		t.Fatalf("accepted a frame of type %q", typ)
	}
	checkHeader(t, p)
	out, err := Append(nil, typ, p)
	if err != nil {
		t.Fatalf("accepted %s frame does not re-encode: %v", typ, err)
	}
	if general, err := appendGeneral(nil, typ, p); err != nil || !bytes.Equal(general, out[PrefixSize:]) {
		t.Fatalf("Append wrote\n%q\nthe general codec %v\n%q", out[PrefixSize:], err, general)
	}
	again := newV()
	if err := Read(bytes.NewReader(out), len(out), again); err != nil {
		t.Fatalf("re-encoded frame unreadable: %v\n%q", err, out)
	}
	if typeOf(again) != typ {
		t.Fatalf("type %q became %q", typ, typeOf(again))
	}
	if p2 := payloadOf(again); !reflect.DeepEqual(p2, p) {
		t.Fatalf("payload %#v became %#v\n%q", p, p2, out)
	}
	// The encoding is canonical: encoding what it decodes to gives it back.
	if out2, err := Append(nil, typ, payloadOf(again)); err != nil || !bytes.Equal(out2, out) {
		t.Fatalf("encoding is not stable: %v\n%q\n%q", err, out, out2)
	}
}

// checkHeader fails if an accepted payload carries a header net/http would not send.
func checkHeader(t *testing.T, p any) {
	var h map[string][]string
	switch p := p.(type) {
	case HTTPRequest:
		h = p.Header
	case HTTPResponse:
		h = p.Header
	default:
		return
	}
	if h == nil {
		t.Fatal("accepted a nil header")
	}
	for name, values := range h {
		if textproto.CanonicalMIMEHeaderKey(name) != name || !httpguts.ValidHeaderFieldName(name) {
			t.Fatalf("accepted header name %q", name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("accepted value %q for %s", v, name)
			}
		}
	}
}
