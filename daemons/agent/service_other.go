//go:build !windows

package main

// runAsWindowsService is for Windows; elsewhere a service manager runs the agent
// as a plain process and stops it with SIGTERM.
func runAsWindowsService(args, environ []string) (code int, ok bool) { return 0, false }
