package platform

import "testing"

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Platform
		ok   bool
	}{
		{"linux/arm64", Platform{"linux", "arm64"}, true},
		{"linux/amd64", Platform{"linux", "amd64"}, true},
		{"windows/arm64", Platform{"windows", "arm64"}, true},
		{"linux", Platform{}, false},
		{"/arm64", Platform{}, false},
		{"linux/", Platform{}, false},
		{"linux/arm/v7", Platform{}, false},
		{"a/b/c", Platform{}, false},
		{"", Platform{}, false},
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("%q.String() = %q", tc.in, got.String())
		}
	}
}
