package lifecycle

import (
	"net/http"
	"testing"
)

// TestDefaultClientIgnoresEnvironmentProxy: without an HTTPClient of its own,
// the API client reaches the endpoint directly, whatever HTTP(S)_PROXY says.
func TestDefaultClientIgnoresEnvironmentProxy(t *testing.T) {
	tr, ok := defaultHTTPClient.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Fatalf("default transport %T follows a proxy function; want none", defaultHTTPClient.Transport)
	}
	if tr == http.DefaultTransport {
		t.Fatal("default client shares http.DefaultTransport, which follows the environment")
	}
}
