package tunnel

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// FuzzReadFrame: no input makes ReadFrame panic, read past the frame or allocate
// beyond its cap, and every frame it accepts encodes again to a frame it reads back
// the same.
func FuzzReadFrame(f *testing.F) {
	for _, seed := range readSeeds(f, "frames/*.frame") {
		f.Add(seed)
	}
	const limit = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		env, err := ReadFrame(r, limit)
		if err != nil {
			if len(data) >= prefixSize && bytes.Equal(data[:4], []byte("FLDY")) && data[4] == ProtocolVersion &&
				binary.BigEndian.Uint32(data[5:9]) > limit && len(data)-r.Len() > prefixSize {
				t.Fatalf("read %d bytes of an oversized frame", len(data)-r.Len())
			}
			return
		}
		if env.Type == "" {
			t.Fatal("accepted a frame without type")
		}
		used := len(data) - r.Len()
		if want := prefixSize + int(binary.BigEndian.Uint32(data[5:9])); used != want {
			t.Fatalf("consumed %d bytes of a %d-byte frame", used, want)
		}
		// Re-encode. The payload is kept as raw JSON, so it goes back compacted.
		out, err := AppendFrame(nil, env.Type, env.Payload)
		if err != nil {
			t.Fatalf("accepted frame does not re-encode: %v", err)
		}
		again, err := ReadFrame(bytes.NewReader(out), len(out))
		if err != nil {
			t.Fatalf("re-encoded frame unreadable: %v\n%q", err, out)
		}
		if again.Type != env.Type {
			t.Fatalf("type %q became %q", env.Type, again.Type)
		}
		if want := compactJSON(t, env.Payload); !bytes.Equal(compactJSON(t, again.Payload), want) {
			t.Fatalf("payload %s became %s", env.Payload, again.Payload)
		}
	})
}

// compactJSON normalises a raw payload; a missing payload re-encodes as null.
func compactJSON(t *testing.T, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("accepted payload is not JSON: %v", err)
	}
	// Marshal escapes HTML characters; undo the difference by decoding both sides
	// through the same path.
	var v any
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzBodyReader: the chunked decoder never panics, never reports a clean end for
// input that is not a complete body, and what it accepts re-encodes to a body it
// decodes the same. The fixed-length reader never reads past its length.
func FuzzBodyReader(f *testing.F) {
	for _, seed := range readSeeds(f, "chunked/*.chunked") {
		f.Add(seed, int64(-1))
		f.Add(seed, int64(len(seed)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, n int64) {
		if n >= 0 {
			n %= int64(len(data)) + 10
			src := bytes.NewReader(data)
			got, err := io.ReadAll(bodyReader(src, n))
			switch {
			case n <= int64(len(data)):
				if err != nil || int64(len(got)) != n || !bytes.Equal(got, data[:n]) {
					t.Fatalf("fixed %d of %d: %d bytes, %v", n, len(data), len(got), err)
				}
			case err != io.ErrUnexpectedEOF:
				t.Fatalf("fixed %d of %d: %v, want unexpected EOF", n, len(data), err)
			}
			return
		}
		src := bytes.NewReader(data)
		got, err := io.ReadAll(io.LimitReader(bodyReader(src, -1), 1<<20))
		if err != nil {
			return
		}
		if len(got) == 1<<20 {
			return // not read to the end
		}
		var wire bytes.Buffer
		if _, err := writeBody(&wire, bytes.NewReader(got), -1); err != nil {
			t.Fatal(err)
		}
		again, err := io.ReadAll(bodyReader(bytes.NewReader(wire.Bytes()), -1))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("re-encoded body: %v", err)
		}
		// A proper prefix of a complete body never reads as complete.
		full := wire.Bytes()
		for _, cut := range []int{0, 1, len(full) / 2, len(full) - 2, len(full) - 1} {
			if cut < 0 || cut >= len(full) {
				continue
			}
			if _, err := io.ReadAll(bodyReader(bytes.NewReader(full[:cut]), -1)); err == nil {
				t.Fatalf("prefix of %d of %d bytes read as complete", cut, len(full))
			}
		}
	})
}

// FuzzDecodePayloads: any payload JSON decodes into each payload type without
// panicking, and what decodes re-encodes and decodes to the same value.
func FuzzDecodePayloads(f *testing.F) {
	for _, seed := range readSeeds(f, "frames/*.frame") {
		if env, err := ReadFrame(bytes.NewReader(seed), 0); err == nil {
			f.Add([]byte(env.Payload))
		}
	}
	f.Add([]byte(`{"status":99999999999999999999}`))
	f.Add([]byte(`{"header":{"a":null,"b":[]},"content_length":-7}`))
	f.Add([]byte(`null`))
	types := []struct {
		typ string
		new func() any
	}{
		{TypeHTTP, func() any { return &HTTPRequest{} }},
		{TypeResponse, func() any { return &HTTPResponse{} }},
		{TypeConnect, func() any { return &ConnectRequest{} }},
		{TypeError, func() any { return &RemoteError{} }},
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, ty := range types {
			env := Envelope{Type: ty.typ, Payload: payload}
			v := ty.new()
			if err := env.Decode(v); err != nil {
				if !errors.Is(err, ErrMalformedHeader) {
					t.Fatalf("%s: untyped decode error %v", ty.typ, err)
				}
				continue
			}
			buf, err := AppendFrame(nil, ty.typ, v)
			if err != nil {
				t.Fatalf("%s: decoded payload does not re-encode: %v", ty.typ, err)
			}
			env2, err := ReadFrame(bytes.NewReader(buf), len(buf))
			if err != nil {
				t.Fatalf("%s: re-encoded frame unreadable: %v", ty.typ, err)
			}
			v2 := ty.new()
			if err := env2.Decode(v2); err != nil {
				t.Fatalf("%s: re-encoded payload does not decode: %v", ty.typ, err)
			}
			// Compare encodings: nil and empty maps both encode as absent.
			a, _ := json.Marshal(v)
			b, _ := json.Marshal(v2)
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: %s became %s", ty.typ, a, b)
			}
		}
	})
}
