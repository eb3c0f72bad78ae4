package pac

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dop251/goja"
)

// The PAC helper functions the script uses, as browsers define them (Mozilla's
// ascii_pac_utils.js and Chromium's pac_js_library). isPlainHostName comes in
// two versions: Chromium's looks for a dot, newer Firefox also for a colon;
// the script must give the same answers under both.
const helpers = `
function dnsDomainIs(host, domain) {
  return (host.length >= domain.length &&
          host.substring(host.length - domain.length) == domain);
}
function convert_addr(ipchars) {
  var bytes = ipchars.split('.');
  var result = ((bytes[0] & 0xff) << 24) |
               ((bytes[1] & 0xff) << 16) |
               ((bytes[2] & 0xff) <<  8) |
                (bytes[3] & 0xff);
  return result;
}
function isInNet(ipaddr, pattern, maskstr) {
  var test = /^(\d{1,4})\.(\d{1,4})\.(\d{1,4})\.(\d{1,4})$/.exec(ipaddr);
  if (test == null) {
    ipaddr = dnsResolve(ipaddr);
    if (ipaddr == null) return false;
  } else if (test[1] > 255 || test[2] > 255 || test[3] > 255 || test[4] > 255) {
    return false;
  }
  var host = convert_addr(ipaddr);
  var pat  = convert_addr(pattern);
  var mask = convert_addr(maskstr);
  return ((host & mask) == (pat & mask));
}
`

var plainHostName = map[string]string{
	"chromium": `function isPlainHostName(host) { return (host.search('\\.') == -1); }`,
	"firefox":  `function isPlainHostName(host) { return (host.search('(\\.)|:') == -1); }`,
}

// resolver stands in for the machine's DNS (dnsResolve): a fixed table, and a
// record of every name looked up.
type resolver struct {
	table  map[string]string
	lookup []string
}

func (r *resolver) dnsResolve(host string) any {
	r.lookup = append(r.lookup, host)
	if ip, ok := r.table[host]; ok {
		return ip
	}
	return nil // what browsers answer for a name that does not resolve
}

// pacVM evaluates script with the helpers in a fresh JavaScript runtime.
func pacVM(t *testing.T, script, variant string, r *resolver) func(url, host string) string {
	t.Helper()
	vm := goja.New()
	if err := vm.Set("dnsResolve", r.dnsResolve); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{helpers, plainHostName[variant], script} {
		if _, err := vm.RunString(src); err != nil {
			t.Fatalf("evaluate: %v\n%s", err, src)
		}
	}
	var find func(string, string) string
	if err := vm.ExportTo(vm.Get("FindProxyForURL"), &find); err != nil {
		t.Fatal(err)
	}
	return find
}

// servedPAC fetches c's PAC file from its Handler over HTTP.
func servedPAC(t *testing.T, c Config) string {
	t.Helper()
	h, err := Handler(c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/proxy.pac")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestPACRoutes evaluates the served PAC file over a table of URLs: intranet
// suffixes and networks, plain names and loopback go DIRECT, the rest to the
// agent (then its SOCKS5 listener); only names that no suffix matched are
// resolved, and only when networks are configured.
func TestPACRoutes(t *testing.T) {
	const tunnel = "PROXY 127.0.0.1:18080; SOCKS5 127.0.0.1:11080"
	c := Config{
		DirectDomains: []string{"corp.example", ".Intra.Example.", "*.lab.example"},
		DirectCIDRs:   []string{"10.0.0.0/8", "192.168.17.5/24", "172.16.0.0/12"},
		Proxy:         "127.0.0.1:18080",
		SOCKS:         "127.0.0.1:11080",
	}
	dns := map[string]string{
		"wiki.internal.example": "10.20.30.40",
		"printer.office.net":    "192.168.17.200",
		"www.example.com":       "93.184.215.14",
		"edge.office.net":       "192.168.18.1",
		"build.vpc.example":     "172.31.255.254",
		"old.vpc.example":       "172.32.0.1",
	}
	for _, tc := range []struct {
		url, host, want string
		resolves        bool
	}{
		{"https://www.example.com/", "www.example.com", tunnel, true},
		{"https://WWW.EXAMPLE.COM/", "WWW.EXAMPLE.COM", tunnel, true},
		{"http://unknown.example.org/", "unknown.example.org", tunnel, true},
		{"https://corp.example/", "corp.example", "DIRECT", false},
		{"https://mail.corp.example/", "mail.corp.example", "DIRECT", false},
		{"https://a.b.corp.example/", "a.b.corp.example", "DIRECT", false},
		{"https://notcorp.example/", "notcorp.example", tunnel, true},
		{"https://corp.example.evil.com/", "corp.example.evil.com", tunnel, true},
		{"https://intra.example/", "intra.example", "DIRECT", false},
		{"https://x.intra.example./", "x.intra.example.", "DIRECT", false},
		{"https://ci.lab.example/", "ci.lab.example", "DIRECT", false},
		{"http://intranet/", "intranet", "DIRECT", false},
		{"http://localhost:3000/", "localhost", "DIRECT", false},
		{"http://app.localhost/", "app.localhost", "DIRECT", false},
		{"http://127.0.0.1:8081/", "127.0.0.1", "DIRECT", false},
		{"http://127.9.9.9/", "127.9.9.9", "DIRECT", false},
		{"http://[::1]:8081/", "[::1]", "DIRECT", false},
		{"http://[::1]:8081/", "::1", "DIRECT", false},
		{"http://[2001:db8::1]/", "2001:db8::1", tunnel, false},
		{"http://[2001:db8::1]/", "[2001:db8::1]", tunnel, false},
		{"http://10.1.2.3/", "10.1.2.3", "DIRECT", false},
		{"http://11.1.2.3/", "11.1.2.3", tunnel, false},
		{"http://192.168.17.9/", "192.168.17.9", "DIRECT", false},
		{"http://192.168.16.9/", "192.168.16.9", tunnel, false},
		{"http://172.20.0.1/", "172.20.0.1", "DIRECT", false},
		{"http://172.32.0.1/", "172.32.0.1", tunnel, false},
		{"http://wiki.internal.example/", "wiki.internal.example", "DIRECT", true},
		{"http://printer.office.net/", "printer.office.net", "DIRECT", true},
		{"http://edge.office.net/", "edge.office.net", tunnel, true},
		{"http://build.vpc.example/", "build.vpc.example", "DIRECT", true},
		{"http://old.vpc.example/", "old.vpc.example", tunnel, true},
		{"http://127.0.0.1.nip.io/", "127.0.0.1.nip.io", tunnel, true},
	} {
		for variant := range plainHostName {
			r := &resolver{table: dns}
			find := pacVM(t, servedPAC(t, c), variant, r)
			if got := find(tc.url, tc.host); got != tc.want {
				t.Errorf("%s: FindProxyForURL(%q, %q) = %q, want %q", variant, tc.url, tc.host, got, tc.want)
			}
			if resolved := len(r.lookup) > 0; resolved != tc.resolves {
				t.Errorf("%s: %s: looked up %q, want a lookup: %v", variant, tc.host, r.lookup, tc.resolves)
			}
		}
	}

	// Without networks, nothing is ever resolved; without SOCKS, no fallback.
	plain := Config{DirectDomains: []string{"corp.example"}, Proxy: "127.0.0.1:8080"}
	r := &resolver{table: dns}
	find := pacVM(t, servedPAC(t, plain), "chromium", r)
	for host, want := range map[string]string{
		"www.example.com":   "PROXY 127.0.0.1:8080",
		"10.1.2.3":          "PROXY 127.0.0.1:8080",
		"mail.corp.example": "DIRECT",
	} {
		if got := find("https://"+host+"/", host); got != want {
			t.Errorf("no networks: %s: %q, want %q", host, got, want)
		}
	}
	if len(r.lookup) > 0 {
		t.Errorf("no networks configured, yet the PAC resolved %q", r.lookup)
	}
}

// TestPACRefusesInjection: values that are not names or networks never reach
// the script.
func TestPACRefusesInjection(t *testing.T) {
	for _, c := range []Config{
		{DirectDomains: []string{`corp.example"; return "DIRECT"; //`}, Proxy: "127.0.0.1:8080"},
		{DirectDomains: []string{"corp.example\n}"}, Proxy: "127.0.0.1:8080"},
		{DirectDomains: []string{"</script>"}, Proxy: "127.0.0.1:8080"},
		{DirectDomains: []string{""}, Proxy: "127.0.0.1:8080"},
		{DirectDomains: []string{"a..b"}, Proxy: "127.0.0.1:8080"},
		{DirectDomains: []string{"-bad.example"}, Proxy: "127.0.0.1:8080"},
		{DirectDomains: []string{"under_score.example"}, Proxy: "127.0.0.1:8080"},
		{DirectCIDRs: []string{`10.0.0.0/8"]];alert(1);//`}, Proxy: "127.0.0.1:8080"},
		{DirectCIDRs: []string{"10.0.0.0"}, Proxy: "127.0.0.1:8080"},
		{DirectCIDRs: []string{"fd00::/8"}, Proxy: "127.0.0.1:8080"},
		{Proxy: `127.0.0.1:8080"; x="`},
		{Proxy: "127.0.0.1:99999"},
		{Proxy: ""},
		{Proxy: "127.0.0.1:8080", SOCKS: "127.0.0.1:1080; DIRECT"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid, want refused", c)
		}
		if _, err := c.Generate(); err == nil {
			t.Errorf("%+v: generated, want refused", c)
		}
	}
}

// FuzzPACDomain: whatever CheckDomain accepts is data in the script: the
// generated file still parses, defines one function, and answers DIRECT for
// the domain and the proxy for another name.
func FuzzPACDomain(f *testing.F) {
	for _, s := range []string{"corp.example", ".corp.example", "*.corp.example", "a-b.c", `x"y`, "x\\", "é.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		norm, err := CheckDomain(d)
		if err != nil {
			return
		}
		if strings.ContainsAny(norm, "\"'\\<>;(){}\n\r ") {
			t.Fatalf("CheckDomain(%q) let %q through", d, norm)
		}
		body, err := Config{DirectDomains: []string{d}, Proxy: "127.0.0.1:8080"}.Generate()
		if err != nil {
			t.Fatal(err)
		}
		find := pacVM(t, string(body), "firefox", &resolver{})
		if got := find("https://www."+norm+"/", "www."+norm); got != "DIRECT" {
			t.Fatalf("domain %q: %q", norm, got)
		}
		if got := find("https://other-"+norm+".test/", "other-"+norm+".test"); got != "PROXY 127.0.0.1:8080" {
			t.Fatalf("other name next to %q: %q", norm, got)
		}
	})
}
