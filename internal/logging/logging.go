// Package logging builds the zerolog loggers used by Fluidity's daemons.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
)

// TimeFormat is the logs' timestamp: RFC 3339 with milliseconds, enough to
// order the lines of one request across the agent and the server.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// zerolog keeps its field formats in package globals, with no per-logger
// setting; the daemons are the only users of this package and want the same
// ones, set once before anything logs: durations as Go writes them ("2.5s",
// "150ms", not a bare number of milliseconds) and timestamps in TimeFormat.
func init() {
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
	zerolog.TimeFieldFormat = TimeFormat
}

// New returns a logger writing to w with timestamps.
//
// level is one of trace, debug, info, warn or error (empty means info).
// format is json (the default when empty) for machines and log shippers
// such as CloudWatch, or console for people reading a terminal. Colour is
// used only when w is a terminal, so redirected output stays plain text.
// The global level is left alone (the field formats are set at init, above).
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvlName := strings.ToLower(strings.TrimSpace(level))
	if lvlName == "" {
		lvlName = "info"
	}
	lvl, ok := parseLevel(lvlName)
	if !ok {
		return zerolog.Nop(), fmt.Errorf("logging: unknown level %q (want trace, debug, info, warn or error)", level)
	}
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: !isTerminal(w), TimeFormat: TimeFormat}
	default:
		return zerolog.Nop(), fmt.Errorf("logging: unknown format %q (want json or console)", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// parseLevel accepts only the five levels the daemons document; zerolog's
// own parser would also admit fatal, panic and disabled.
func parseLevel(name string) (zerolog.Level, bool) {
	switch name {
	case "trace":
		return zerolog.TraceLevel, true
	case "debug":
		return zerolog.DebugLevel, true
	case "info":
		return zerolog.InfoLevel, true
	case "warn":
		return zerolog.WarnLevel, true
	case "error":
		return zerolog.ErrorLevel, true
	}
	return zerolog.NoLevel, false
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
