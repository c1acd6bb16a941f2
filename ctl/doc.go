// Package ctl is celeroot's command line: the urfave/cli command tree, the
// output formats, and the all-in-one dev mode.
//
// Run owns every byte of I/O and the exit code, so the whole CLI can be run
// in-process by tests: 0 on success, 1 on failure, 2 on a usage error.
// Commands only return errors; Run prints them once, as
// "celeroot: <command>: <error>".
package ctl
