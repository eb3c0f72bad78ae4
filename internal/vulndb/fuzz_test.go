package vulndb

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: decode never panics, and what it accepts is safe to use as a file name.
func FuzzDecode(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "osv", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"../x"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := decode(raw)
		if err != nil {
			return
		}
		if e.ID == "" || filepath.Base(e.ID) != e.ID || e.ID == "." || e.ID == ".." {
			t.Fatalf("accepted id %q", e.ID)
		}
	})
}

// FuzzGate: govulncheck's stream is decoded without panicking, whatever it holds.
func FuzzGate(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "govulncheck.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"config":{}}{"finding":{"trace":[{"function":"f"}]}}`))
	f.Fuzz(func(t *testing.T, stream []byte) {
		_ = Gate(bytes.NewReader(stream), map[string]string{"GO-2099-0001": "x"}, io.Discard)
	})
}
