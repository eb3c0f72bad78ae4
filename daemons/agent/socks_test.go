package main

import (
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// socksThrough fetches url through the agent's SOCKS5 listener at addr,
// expecting body.
func socksThrough(t *testing.T, addr, url, body string) {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: d.(proxy.ContextDialer).DialContext, DisableKeepAlives: true}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("through SOCKS5: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Fatalf("through SOCKS5: %d %q", resp.StatusCode, got)
	}
}
