// Package scripts holds no Go code for the programs: its tests check the
// shell scripts beside them (the release archives of release.sh).
package scripts
