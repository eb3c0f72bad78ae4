package testbin

import (
	"os"
	"testing"
)

func TestProcStatusBytes(t *testing.T) {
	rss, err := ProcStatusBytes(os.Getpid(), "VmRSS")
	if err != nil || rss < 1<<20 {
		t.Fatalf("VmRSS of this test: %d bytes, %v", rss, err)
	}
	if _, err := ProcStatusBytes(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("a missing field reads as a value")
	}
}
