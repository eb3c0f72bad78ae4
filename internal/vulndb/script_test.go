package vulndb

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestScriptWithoutDatabase: with no module proxy and an empty cache, the
// govulncheck step says so loudly and skips, or fails when required: never a
// quiet pass.
func TestScriptWithoutDatabase(t *testing.T) {
	script, err := filepath.Abs("../../scripts/vulncheck.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, required := range []bool{false, true} {
		cmd := exec.CommandContext(t.Context(), "bash", script) // #nosec G204 -- the repository's own script
		cmd.Env = append(os.Environ(),
			"GOPROXY=off", "GOFLAGS=-modcacherw",
			"GOMODCACHE="+t.TempDir(),
			"FLUIDITY_VULNDB_CACHE="+t.TempDir(),
		)
		if required {
			cmd.Env = append(cmd.Env, "FLUIDITY_VULNCHECK=required")
		}
		out, err := cmd.CombinedOutput()
		if !strings.Contains(string(out), "govulncheck NOT RUN") {
			t.Errorf("required=%v: no banner:\n%s", required, out)
		}
		if failed := err != nil; failed != required {
			t.Errorf("required=%v: err %v\n%s", required, err, out)
		}
	}
}
