package lifecycle

import (
	"errors"
	"testing"
)

// FuzzDecodeAnswer feeds the wake/kill API decoder arbitrary answers: it must never
// panic, must return a typed *APIError for every non-2xx status, and a running
// answer it accepts must carry a dialable address.
func FuzzDecodeAnswer(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{200, `{"state":"running","address":"203.0.113.7:8443","desired_count":1,"running_count":1}`},
		{200, `{"state":"starting","desired_count":1,"pending_count":1}`},
		{200, `{"state":"running","address":"nonsense"}`},
		{403, `{"message":"Forbidden"}`},
		{500, `{"code":"aws_error","message":"boom"}`},
		{429, ``},
		{200, `{`},
		{200, `null`},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		var r WakeResult
		err := decodeAnswer("wake", status, body, &r)
		if status < 200 || status > 299 {
			var ae *APIError
			if !errors.As(err, &ae) || ae.StatusCode != status {
				t.Fatalf("status %d: error %v is not an *APIError with that status", status, err)
			}
			return
		}
		if err == nil && r.check() == nil && r.State == StateRunning && r.Address == "" {
			t.Fatal("running answer without an address accepted")
		}
	})
}
