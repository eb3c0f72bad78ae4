package vulndb

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode"
)

// ErrFindings is returned by Gate when reachable code calls a vulnerable
// symbol that the accepted list does not name.
var ErrFindings = errors.New("vulndb: vulnerable code is called")

// message is one value of `govulncheck -format json`'s stream.
type message struct {
	Config *struct {
		GoVersion      string `json:"go_version"`
		ScannerVersion string `json:"scanner_version"`
		DB             string `json:"db"`
	} `json:"config"`
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
			Receiver string `json:"receiver"`
			Position *struct {
				Filename string `json:"filename"`
				Line     int    `json:"line"`
			} `json:"position"`
		} `json:"trace"`
	} `json:"finding"`
}

// finding is one vulnerability that reachable code calls.
type finding struct {
	id, module, version, fixed string
	example                    string // the call in this module that reaches it
}

// ParseAccepted reads the accepted list: one "ID reason…" a line, # comments.
// Every entry needs its reason.
func ParseAccepted(r io.Reader) (map[string]string, error) {
	accepted := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason := line, ""
		if i := strings.IndexFunc(line, unicode.IsSpace); i >= 0 {
			id, reason = line[:i], strings.TrimSpace(line[i:])
		}
		if reason == "" {
			return nil, fmt.Errorf("vulndb: accepted list line %d: %s has no reason", n, id)
		}
		accepted[id] = reason
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vulndb: accepted list: %w", err)
	}
	return accepted, nil
}

// Gate reads govulncheck's JSON stream from r (source mode, symbol level)
// and writes a summary to w. Findings at module or package level (vulnerable
// code that is required or imported but never called) are not counted, as
// govulncheck's own exit status does not count them. It returns ErrFindings
// when a called vulnerability is not in accepted.
func Gate(r io.Reader, accepted map[string]string, w io.Writer) error {
	found, goVersion, err := decodeFindings(r)
	if err != nil {
		return err
	}
	var refused, kept []finding
	for _, f := range found {
		if _, ok := accepted[f.id]; ok {
			kept = append(kept, f)
		} else {
			refused = append(refused, f)
		}
	}
	line := func(f finding) string {
		fixed := f.fixed
		if fixed == "" {
			fixed = "no fix"
		}
		return fmt.Sprintf("%s  %s@%s (fixed in %s), e.g. %s", f.id, f.module, f.version, fixed, f.example)
	}
	if goVersion != "" {
		_, _ = fmt.Fprintf(w, "govulncheck: standard library of %s\n", goVersion)
	}
	for _, f := range kept {
		_, _ = fmt.Fprintf(w, "ACCEPTED %s\n         why: %s\n", line(f), accepted[f.id])
	}
	ids := slices.Sorted(maps.Keys(accepted))
	for _, id := range ids {
		if !slices.ContainsFunc(found, func(f finding) bool { return f.id == id }) {
			_, _ = fmt.Fprintf(w, "note: %s is accepted but no longer found: drop it from the list\n", id)
		}
	}
	for _, f := range refused {
		_, _ = fmt.Fprintf(w, "VULNERABLE %s\n", line(f))
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %d finding(s); upgrade the module (or Go), or name the ID in the accepted list with the reason", ErrFindings, len(refused))
	}
	_, _ = fmt.Fprintf(w, "govulncheck: no vulnerable call outside the accepted list (%d accepted)\n", len(kept))
	return nil
}

func decodeFindings(r io.Reader) ([]finding, string, error) {
	var (
		found     []finding
		goVersion string
		sawConfig bool
	)
	dec := json.NewDecoder(r)
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("vulndb: govulncheck output: %w", err)
		}
		if m.Config != nil {
			sawConfig = true
			goVersion = m.Config.GoVersion
		}
		if m.Finding == nil || len(m.Finding.Trace) == 0 || m.Finding.Trace[0].Function == "" {
			continue
		}
		t := m.Finding.Trace
		f := finding{id: m.Finding.OSV, module: t[0].Module, version: t[0].Version, fixed: m.Finding.FixedVersion}
		// The trace runs from the vulnerable symbol to the entry point: the
		// last frame with a position is where this module's code starts it.
		for i := len(t) - 1; i >= 0; i-- {
			if p := t[i].Position; p != nil && p.Line > 0 {
				f.example = fmt.Sprintf("%s:%d", p.Filename, p.Line)
				break
			}
		}
		if i := slices.IndexFunc(found, func(g finding) bool { return g.id == f.id }); i >= 0 {
			continue // one line per vulnerability, not per trace
		}
		found = append(found, f)
	}
	if !sawConfig {
		// An empty or cut-off stream must not pass as "nothing found".
		return nil, "", errors.New("vulndb: govulncheck output has no config message")
	}
	slices.SortFunc(found, func(a, b finding) int { return strings.Compare(a.id, b.id) })
	return found, goVersion, nil
}
