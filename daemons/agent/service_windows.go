package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kardianos/service"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
)

// runAsWindowsService runs the agent under the service control manager when it
// is what started this process (ok is false otherwise). The manager's stop
// request cancels the agent's context, as SIGTERM does elsewhere, and waits for
// the graceful shutdown. The log goes to the Windows event log (Application,
// source fluidity-agent), which `service install` registered.
func runAsWindowsService(args, environ []string) (code int, ok bool) {
	if service.Interactive() {
		return 0, false
	}
	cfg, err := serviceConfig("windows", serviceSpec{})
	if err != nil {
		return 1, true
	}
	p := &windowsProgram{args: args, environ: environ}
	s, err := service.New(p, cfg)
	if err != nil {
		return 1, true
	}
	if l, err := s.Logger(nil); err == nil {
		p.log = eventLogWriter{l}
	}
	if err := s.Run(); err != nil {
		_ = p.logger().Error(err)
		return 1, true
	}
	return p.code, true
}

type windowsProgram struct {
	args, environ []string
	log           eventLogWriter

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	stopping bool
	code     int
}

func (p *windowsProgram) logger() service.Logger {
	if p.log.l == nil {
		return service.ConsoleLogger
	}
	return p.log.l
}

// Start returns at once, as the service manager wants; the agent runs until
// Stop. An agent that ends by itself ends the process with its status, so the
// manager's recovery (restart on failure) applies.
func (p *windowsProgram) Start(service.Service) error {
	// Relative paths in the configuration are relative to its directory, as
	// with systemd and launchd (whose units set the working directory).
	if dir := configDir(p.args); dir != "" {
		if err := os.Chdir(dir); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.cancel, p.done = cancel, make(chan struct{})
	p.mu.Unlock()
	go func() {
		code := run(ctx, p.args, p.environ, io.Discard, p.log)
		p.mu.Lock()
		p.code = code
		stopping := p.stopping
		p.mu.Unlock()
		close(p.done)
		if !stopping {
			if code == 0 {
				code = 1 // the service manager did not ask it to stop
			}
			os.Exit(code)
		}
	}()
	return nil
}

// Stop cancels the agent's context and waits for its shutdown.
func (p *windowsProgram) Stop(service.Service) error {
	p.mu.Lock()
	p.stopping = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// configDir is the directory of --config in the service's arguments.
func configDir(args []string) string {
	fs := pflag.NewFlagSet("", pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.SetOutput(io.Discard)
	file := fs.StringP("config", "c", "", "")
	_ = fs.Parse(args)
	if *file == "" {
		return ""
	}
	return filepath.Dir(*file)
}

// eventLogWriter sends each log line to the event log at its level.
type eventLogWriter struct{ l service.Logger }

func (w eventLogWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.InfoLevel, p)
}

func (w eventLogWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	if w.l == nil {
		return len(p), nil
	}
	msg := strings.TrimRight(string(p), "\n")
	var err error
	switch {
	case level >= zerolog.ErrorLevel:
		err = w.l.Error(msg)
	case level == zerolog.WarnLevel:
		err = w.l.Warning(msg)
	default:
		err = w.l.Info(msg)
	}
	return len(p), err
}
