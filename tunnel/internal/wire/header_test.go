package wire

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// headerFrames wrap a "header" member (JSON text, or "" for none) in each frame
// type that carries a header, and return the header it decoded to.
var headerFrames = []struct {
	name   string
	header func(member string) string
	decode func(raw []byte) (http.Header, error)
}{
	{"http", func(m string) string {
		return `{"type":"http","payload":{"method":"GET","url":"http://example.com/"` + m + `}}`
	}, decodeRequestHeader},
	{"websocket", func(m string) string {
		return `{"type":"websocket","payload":{"method":"GET","url":"ws://example.com/"` + m + `}}`
	}, decodeRequestHeader},
	{"response", func(m string) string {
		return `{"type":"response","payload":{"status":200` + m + `}}`
	}, func(raw []byte) (http.Header, error) {
		var a Answer
		err := Read(bytes.NewReader(raw), 0, &a)
		return a.Response().Header, err
	}},
}

func decodeRequestHeader(raw []byte) (http.Header, error) {
	var r Request
	err := Read(bytes.NewReader(raw), 0, &r)
	return r.HTTP().Header, err
}

// headerMember returns `,"header":json`, or nothing for an empty json.
func headerMember(json string) string {
	if json == "" {
		return ""
	}
	return `,"header":` + json
}

func TestHeaderCanonical(t *testing.T) {
	cases := []struct {
		name string
		json string      // the header member; "" for none
		want http.Header // nil: malformed
	}{
		{"lower case", `{"connection":["close"]}`, http.Header{"Connection": {"close"}}},
		{"upper case", `{"CONNECTION":["close"]}`, http.Header{"Connection": {"close"}}},
		{"hyphenated", `{"x-forwarded-for":["10.0.0.1"],"sec-websocket-key":["k"]}`,
			http.Header{"X-Forwarded-For": {"10.0.0.1"}, "Sec-Websocket-Key": {"k"}}},
		{"already canonical", `{"Accept":["*/*"],"X-Multi":["a","b"],"Www-Authenticate":["Basic"]}`,
			http.Header{"Accept": {"*/*"}, "X-Multi": {"a", "b"}, "Www-Authenticate": {"Basic"}}},
		// Names that differ only in case are merged in sorted order of the
		// original names ("Content-Type" < "content-type").
		{"merged", `{"content-type":["text/plain"],"Content-Type":["text/html"]}`,
			http.Header{"Content-Type": {"text/html", "text/plain"}}},
		{"merged three", `{"content-type":["c"],"Content-Type":["b"],"CONTENT-TYPE":["a"]}`,
			http.Header{"Content-Type": {"a", "b", "c"}}},
		{"merged with others", `{"x-a":["1","2"],"X-a":["3"],"Accept":["*/*"]}`,
			http.Header{"X-A": {"3", "1", "2"}, "Accept": {"*/*"}}},
		{"token characters", "{\"x!#$%&'*+-.^_`|~9\":[\"v\"]}", http.Header{"X!#$%&'*+-.^_`|~9": {"v"}}},
		{"empty values", `{"X-Empty":[""],"X-None":[],"X-Null":null}`,
			http.Header{"X-Empty": {""}, "X-None": {}, "X-Null": nil}},
		{"empty values merged", `{"x-empty":[""],"x-none":[],"x-null":null}`,
			http.Header{"X-Empty": {""}, "X-None": {}, "X-Null": nil}},
		{"tab and obs-text in value", `{"X-V":["a\tb","caf\u00e9"]}`, http.Header{"X-V": {"a\tb", "café"}}},
		// Invalid UTF-8 becomes U+FFFD (see jsonOptions), which is obs-text.
		{"invalid UTF-8 in value", "{\"X-V\":[\"caf\xe9\"]}", http.Header{"X-V": {"caf\uFFFD"}}},
		{"empty object", `{}`, http.Header{}},
		{"null", `null`, http.Header{}},
		{"absent", ``, http.Header{}},

		{"space in name", `{"bad name":["v"]}`, nil},
		{"NUL in name", `{"x\u0000":["v"]}`, nil},
		{"empty name", `{"":["v"]}`, nil},
		{"colon in name", `{"x:y":["v"]}`, nil},
		{"CRLF in name", `{"x\r\ny":["v"]}`, nil},
		{"non-ASCII name", `{"caf\u00e9":["v"]}`, nil},
		{"invalid UTF-8 in name", "{\"x\xff\":[\"v\"]}", nil},
		{"bad name among good", `{"Accept":["*/*"],"bad name":["v"]}`, nil},
		{"bad name that needs merging", `{"content-type":["a"],"Content Type":["b"]}`, nil},
		{"CRLF in value", `{"X-A":["a\r\nSet-Cookie: x=1"]}`, nil},
		{"LF in value", `{"X-A":["a\nb"]}`, nil},
		{"CR in value", `{"X-A":["a\rb"]}`, nil},
		{"NUL in value", `{"X-A":["a\u0000b"]}`, nil},
		{"DEL in value", `{"X-A":["a\u007fb"]}`, nil},
		{"bad second value", `{"X-A":["ok","a\r\nb"]}`, nil},
		{"bad value in non-canonical name", `{"x-a":["a\u0000"]}`, nil},
	}
	for _, tc := range cases {
		for _, fr := range headerFrames {
			t.Run(tc.name+"/"+fr.name, func(t *testing.T) {
				got, err := fr.decode(frame(fr.header(headerMember(tc.json))))
				if tc.want == nil {
					if !isMalformed(err) {
						t.Fatalf("header %s: %v, want ErrMalformed", tc.json, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got == nil {
					t.Fatal("decoded a nil header")
				}
				if !reflect.DeepEqual(emptyAsNil(got), emptyAsNil(tc.want)) {
					t.Fatalf("header %s decoded to %#v, want %#v", tc.json, got, tc.want)
				}
			})
		}
	}
}

// emptyAsNil returns a copy of h with empty value lists as nil: either means
// "no values" (a merged header has nil where its input had []).
func emptyAsNil(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		if len(v) == 0 {
			v = nil
		}
		out[k] = v
	}
	return out
}

// TestHeaderMergeDeterministic: one header always decodes one way, whatever the
// order Go iterates the map in.
func TestHeaderMergeDeterministic(t *testing.T) {
	var names []string
	for _, n := range []string{"x-dup", "X-Dup", "X-DUP", "x-DUP", "X-dup", "x-Dup"} {
		names = append(names, `"`+n+`":["`+n+`"]`)
	}
	json := `{` + strings.Join(names, ",") + `}`
	want := http.Header{"X-Dup": {"X-DUP", "X-Dup", "X-dup", "x-DUP", "x-Dup", "x-dup"}}
	for _, fr := range headerFrames {
		t.Run(fr.name, func(t *testing.T) {
			raw := frame(fr.header(headerMember(json)))
			for i := range 50 {
				got, err := fr.decode(raw)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("decode %d: %v, want %v", i, got, want)
				}
			}
		})
	}
}

// TestCanonicalHeaderDirect exercises canonicalHeader itself: a canonical header
// is returned as it is, and the input is never modified.
func TestCanonicalHeaderDirect(t *testing.T) {
	h := http.Header{"Accept": {"*/*"}, "X-Multi": {"a", "b"}}
	got, err := canonicalHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(h).UnsafePointer() {
		t.Error("a canonical header was copied")
	}

	in := http.Header{"accept": {"*/*"}, "Accept": {"text/html"}}
	got, err = canonicalHeader(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := (http.Header{"Accept": {"text/html", "*/*"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("merged %v, want %v", got, want)
	}
	if want := (http.Header{"accept": {"*/*"}, "Accept": {"text/html"}}); !reflect.DeepEqual(in, want) {
		t.Errorf("input modified: %v", in)
	}
	// Merging must not alias the input's value slices: appending to a merged
	// value must not write into the input's backing array.
	vals := make([]string, 1, 4)
	vals[0] = "1"
	in = http.Header{"x-a": vals}
	got, _ = canonicalHeader(in)
	got["X-A"] = append(got["X-A"], "2")
	if v := vals[:2]; v[1] != "" {
		t.Errorf("merged header aliases the input: %q", v)
	}

	if got, err := canonicalHeader(nil); err != nil || got == nil || len(got) != 0 {
		t.Errorf("nil header: %#v, %v", got, err)
	}
	for _, bad := range []http.Header{{"bad name": {"v"}}, {"x\x00": {"v"}}, {"": {"v"}}, {"X": {"a\r\nb"}}, {"X": {"\x00"}}} {
		if _, err := canonicalHeader(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", bad, err)
		}
	}
}

// TestHeaderNotCheckedForConnect: a connect frame's payload carries no header;
// stray HTTP members in it are not the reader's concern, and its HTTP payload is
// left as decoded (callers read it through Connect only).
func TestHeaderNotCheckedForConnect(t *testing.T) {
	var r Request
	err := Read(bytes.NewReader(frame(`{"type":"connect","payload":{"addr":"a:1","header":{"bad name":["v"]}}}`)), 0, &r)
	if err != nil || r.Connect().Addr != "a:1" {
		t.Fatalf("%+v, %v", r, err)
	}
}

// TestDecodeReuse: a value decoded into twice keeps nothing of the first frame.
func TestDecodeReuse(t *testing.T) {
	var r Request
	if err := Decode([]byte(`{"type":"http","payload":{"method":"GET","url":"u","header":{"X-Old":["1"]},"content_length":5}}`), &r); err != nil {
		t.Fatal(err)
	}
	if err := Decode([]byte(`{"type":"http","payload":{"url":"v","header":{"X-New":["1"]}}}`), &r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("second frame without method: %v, want ErrMalformed", err)
	}
	var a Answer
	if err := Decode([]byte(`{"type":"response","payload":{"status":200,"content_length":1}}`), &a); err != nil {
		t.Fatal(err)
	}
	if err := Decode([]byte(`{"type":"response","payload":{}}`), &a); !errors.Is(err, ErrMalformed) {
		t.Fatalf("second answer without status: %v, want ErrMalformed", err)
	}
}
