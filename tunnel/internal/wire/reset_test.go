package wire

import (
	"fmt"
	"testing"
)

func TestResetName(t *testing.T) {
	cases := []struct {
		code uint32
		want string
	}{
		// The values are HTTP/2's error codes (RFC 9113 §7).
		{ResetNoError, "no_error"},
		{0x0, "no_error"},
		{ResetProtocol, "protocol_error"},
		{0x1, "protocol_error"},
		{ResetInternal, "internal_error"},
		{0x2, "internal_error"},
		{ResetRefused, "refused_stream"},
		{0x7, "refused_stream"},
		{ResetCancel, "cancel"},
		{0x8, "cancel"},
		{0x3, "unknown"}, // FLOW_CONTROL_ERROR: not one of ours
		{0xd, "unknown"},
		{0xffffffff, "unknown"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%#x", tc.code), func(t *testing.T) {
			if got := ResetName(tc.code); got != tc.want {
				t.Errorf("ResetName(%#x) = %q, want %q", tc.code, got, tc.want)
			}
		})
	}
}
