package admin

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
}

// TestGuardHost: only the listener's own address and localhost get through;
// a name a web page controls (DNS rebinding to 127.0.0.1) does not.
func TestGuardHost(t *testing.T) {
	self := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}
	g := Guard(self, okHandler())
	for host, want := range map[string]int{
		"127.0.0.1:8081":         200,
		"127.0.0.1":              200,
		"localhost:8081":         200,
		"LOCALHOST":              200,
		"localhost:9999":         421, // another port: not this listener
		"127.0.0.2:8081":         421,
		"[::1]:8081":             421,
		"evil.example:8081":      421, // resolves to 127.0.0.1 on the attacker's say-so
		"localhost.evil.example": 421,
		"127.0.0.1.nip.io:8081":  421,
		"":                       421,
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Host = host
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
	// Bound to all interfaces, any address literal names it, never a name.
	all := Guard(&net.TCPAddr{IP: net.IPv6unspecified, Port: 8081}, okHandler())
	for host, want := range map[string]int{"10.1.2.3:8081": 200, "[::1]:8081": 200, "metrics.example:8081": 421} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Host = host
		w := httptest.NewRecorder()
		all.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("all interfaces, Host %q: %d, want %d", host, w.Code, want)
		}
	}
}

// TestGuardCrossOrigin: a POST from another origin is refused, by Sec-Fetch-Site
// or, from older browsers, by Origin; same-origin and non-browser POSTs and
// cross-origin GETs pass.
func TestGuardCrossOrigin(t *testing.T) {
	self := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}
	g := Guard(self, okHandler())
	for _, c := range []struct {
		name, method string
		header       map[string]string
		want         int
	}{
		{"cross-site fetch", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site, other origin", "POST", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"old browser, other origin", "POST", map[string]string{"Origin": "https://evil.example"}, 403},
		{"other port on localhost", "POST", map[string]string{"Origin": "http://localhost:3000"}, 403},
		{"same origin", "POST", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8081"}, 200},
		{"same origin, old browser", "POST", map[string]string{"Origin": "http://127.0.0.1:8081"}, 200},
		{"curl", "POST", nil, 200},
		{"cross-site GET", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200},
	} {
		r := httptest.NewRequest(c.method, "/action", nil)
		r.Host = "127.0.0.1:8081"
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d", c.name, w.Code, c.want)
		}
	}
}

// TestStart serves /metrics from the registry on a real listener, and nothing
// else.
func TestStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fluidity_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	s, err := Start("127.0.0.1:0", reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr().String()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "fluidity_test_things_total 3") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for _, c := range []struct {
		method, path string
		header       string
		want         int
	}{
		{"GET", "/other", "", 404},
		{"POST", "/metrics", "", 405},
		{"POST", "/metrics", "cross-site", 403},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		if c.header != "" {
			req.Header.Set("Sec-Fetch-Site", c.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (%s): %d, want %d", c.method, c.path, c.header, resp.StatusCode, c.want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
