package status

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

// WriteText writes s for a person at a terminal (fluidity status), ending
// with the status page's address, page, if not empty.
func (s Snapshot) WriteText(w io.Writer, page string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	state := Label(s.State)
	if !s.Since.IsZero() {
		state += " for " + HumanDuration(s.Time.Sub(s.Since))
	}
	up := 0
	for _, ss := range s.Sessions {
		if ss.Up {
			up++
		}
	}
	line("Tunnel:", "%s (%d of %d sessions up)", state, up, len(s.Sessions))
	if s.Reason != "" {
		line("", "%s", s.Reason)
	}
	if w := s.Wake; w != nil {
		ws := w.State
		if ws == "" {
			ws = "not asked yet"
		}
		if w.Waking {
			ws += fmt.Sprintf(", waking for %.0f s", w.ElapsedSeconds)
		}
		line("Server:", "%s (control plane)", ws)
		if w.Error != "" {
			line("", "last failure: %s", w.Error)
		}
	} else if s.Server != "" {
		line("Server:", "%s", s.Server)
	}
	line("Route:", "%s", s.Route)
	for _, ss := range s.Sessions {
		switch {
		case ss.Up:
			rtt := "not measured"
			if ss.RTTMillis > 0 {
				rtt = fmt.Sprintf("%.1f ms", ss.RTTMillis)
			}
			line(fmt.Sprintf("Session %d:", ss.ID), "up %s, round trip %s, streams %d, ↓ %s ↑ %s",
				HumanDuration(s.Time.Sub(ss.Since)), rtt, ss.Streams, HumanBytes(float64(ss.Received)), HumanBytes(float64(ss.Sent)))
		case ss.Connecting:
			line(fmt.Sprintf("Session %d:", ss.ID), "connecting")
		default:
			line(fmt.Sprintf("Session %d:", ss.ID), "down")
		}
	}
	var kinds []string
	for k, n := range s.Streams.ByKind {
		if n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
	}
	sort.Strings(kinds)
	open := fmt.Sprintf("%d open", s.Streams.Active)
	if len(kinds) > 0 {
		open += " (" + strings.Join(kinds, ", ") + ")"
	}
	line("Streams:", "%s, %d since start", open, s.Streams.Total)
	now := "not measured"
	if s.Traffic.WindowSeconds > 0 {
		now = fmt.Sprintf("↓ %s/s ↑ %s/s", HumanBytes(s.Traffic.ReceivedPerSecond), HumanBytes(s.Traffic.SentPerSecond))
	}
	line("Throughput:", "%s now; ↓ %s ↑ %s since start", now, HumanBytes(float64(s.Traffic.Received)), HumanBytes(float64(s.Traffic.Sent)))
	if len(s.Errors) == 0 {
		line("Errors:", "none")
	}
	for i, e := range s.Errors {
		k := ""
		if i == 0 {
			k = "Errors:"
		}
		line(k, "%s: %d in the last %.0f min, %d since start, last %s ago (%s)", e.Code, e.Recent, RecentWindow.Minutes(),
			e.Total, HumanDuration(s.Time.Sub(e.Last)), tunnel.ErrorCode(e.Code).Meaning())
	}
	if a := s.LastAction; a != nil {
		line("Last action:", "%s at %s: %s", a.Name, a.Time.Local().Format("15:04:05"), a.Result)
	}
	if page != "" {
		line("Status page:", "%s", page)
	}
	return tw.Flush()
}
