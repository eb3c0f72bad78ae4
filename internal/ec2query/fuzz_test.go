package ec2query

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode feeds any body to the decoders of every answer: none may
// panic, an error answer always yields a usable *APIError, and what a
// decoder keeps survives being encoded and decoded again unchanged (the
// struct tags select the same elements both ways). The seeds are the
// documented answers in testdata/ (and go test's corpus in
// testdata/fuzz/FuzzDecode).
func FuzzDecode(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(400, b)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := decodeError(status, body)
		if e == nil || e.Code == "" || e.StatusCode != status {
			t.Fatalf("decodeError(%d) = %+v", status, e)
		}
		roundTrip(t, body, &errorResponse{}, &errorResponse{})
		roundTrip(t, body, &networkInterfacesPage{}, &networkInterfacesPage{})
		roundTrip(t, body, &vpcsPage{}, &vpcsPage{})
		roundTrip(t, body, &subnetsPage{}, &subnetsPage{})
	})
}

func roundTrip[T any](t *testing.T, body []byte, first, second *T) {
	t.Helper()
	if xml.Unmarshal(body, first) != nil {
		return
	}
	enc, err := xml.Marshal(first)
	if err != nil {
		// A decoded name that cannot be an element name again (the
		// document's own root, for the pages without XMLName).
		return
	}
	if err := xml.Unmarshal(enc, second); err != nil {
		t.Fatalf("re-decoding %q: %v", enc, err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("round trip changed %+v into %+v", *first, *second)
	}
}
