package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// checkSNI says why s cannot be sent as server_sni, or nil; empty means none.
// An SNI is a DNS host name (RFC 6066): Go's TLS client silently drops an IP
// address or a name with a trailing dot, so those are refused here rather than
// leaving the user to believe a name is sent.
func checkSNI(s string) error {
	switch {
	case s == "":
		return nil
	case net.ParseIP(s) != nil:
		return errors.New("an IP address is never sent as SNI; give a host name, or leave it empty for none")
	case strings.HasSuffix(s, "."):
		return errors.New("a name with a trailing dot is never sent as SNI; drop the dot")
	case len(s) > 253:
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a host name", s)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a host name", s)
			}
		}
	}
	return nil
}
