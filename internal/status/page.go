package status

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/fluidity-tunnel/fluidity/tunnel"
)

//go:embed page.html
var pageFS embed.FS

// Actions are the lifecycle calls behind the page's buttons. Each returns
// the server's state as the control plane answered.
type Actions struct {
	Wake  func(ctx context.Context) (string, error)
	Sleep func(ctx context.Context) (string, error)
}

// actionTimeout bounds one button's API call.
const actionTimeout = 30 * time.Second

// Handler serves the status page (GET /), its facts as JSON (GET
// /status.json) and, with actions, POST /wake and POST /sleep. Mount it
// behind admin.Guard, which refuses foreign Host headers and cross-origin
// POSTs.
func Handler(t *Tracker, actions *Actions, log zerolog.Logger) http.Handler {
	page := template.Must(template.New("page.html").Funcs(funcs).ParseFS(pageFS, "page.html"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		nonce := newNonce()
		h := w.Header()
		// Everything the page needs is in it: nothing may load from elsewhere,
		// and no other page may frame it (its buttons act).
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+"'; img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "text/html; charset=utf-8")
		err := page.Execute(w, pageData{Snapshot: t.Snapshot(), Nonce: nonce})
		if err != nil {
			log.Warn().Err(err).Msg("status page")
		}
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(t.Snapshot())
	})
	act := func(name string, call func(context.Context) (string, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			a := Action{Name: name, Time: time.Now()}
			if call == nil {
				a.Result = ErrNoLifecycle.Error()
			} else {
				ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
				state, err := call(ctx)
				cancel()
				a.Result, a.OK = state, err == nil
				if err != nil {
					a.Result = err.Error()
				}
				t.RecordAction(a)
				ev := log.Info()
				if err != nil {
					ev = log.Warn().Err(err)
				}
				ev.Str("action", name).Str("state", state).Msg("lifecycle action from the admin listener")
			}
			code := http.StatusOK
			switch {
			case call == nil:
				code = http.StatusNotFound
			case !a.OK:
				code = http.StatusBadGateway
			}
			// A form posted without the page's script goes back to the page.
			if !strings.Contains(r.Header.Get("Accept"), "application/json") && call != nil {
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(a)
		}
	}
	var wake, sleep func(context.Context) (string, error)
	if actions != nil {
		wake, sleep = actions.Wake, actions.Sleep
	}
	mux.HandleFunc("POST /wake", act("wake", wake))
	mux.HandleFunc("POST /sleep", act("sleep", sleep))
	return mux
}

type pageData struct {
	Snapshot
	Nonce string
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var funcs = template.FuncMap{
	"bytes": func(n int64) string { return HumanBytes(float64(n)) },
	"rate":  func(f float64) string { return HumanBytes(f) + "/s" },
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return HumanDuration(now.Sub(t)) + " ago"
	},
	"for": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return HumanDuration(now.Sub(t))
	},
	"clock":   func(t time.Time) string { return t.Local().Format("15:04:05") },
	"meaning": func(code string) string { return tunnel.ErrorCode(code).Meaning() },
	"label":   Label,
}

// Label says a state in a few words.
func Label(s State) string {
	switch s {
	case StateConnected:
		return "Connected"
	case StateConnecting:
		return "Connecting"
	case StateReconnecting:
		return "Reconnecting"
	case StateAsleep:
		return "Server asleep"
	case StateWaking:
		return "Waking the server"
	case StateIdle:
		return "Idle"
	case StateError:
		return "Error"
	}
	return string(s)
}

// HumanBytes writes n bytes as people read them: 1.5 MB (powers of 1000).
func HumanBytes(n float64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%.0f B", n)
	}
	div, exp := float64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", n/div, "kMGTP"[exp])
}

// HumanDuration rounds d to what matters to a person: 45s, 3m20s, 2h5m.
func HumanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
