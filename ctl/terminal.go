package ctl

import (
	"io"
	"os"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

// This file is the one place that decides what a writer is: a terminal or
// not, how wide, and whether to colour what goes to it.

// fdWriter is a writer with a file descriptor, as *os.File is.
type fdWriter interface {
	io.Writer
	Fd() uintptr
}

// isTerminal reports whether w is a terminal (not merely a character
// device such as /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(fdWriter)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth returns the width of the terminal w in columns, or 0 if w
// is not a terminal or does not say.
func terminalWidth(w io.Writer) int {
	f, ok := w.(fdWriter)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// useColor reports whether to colour what goes to w: only on a terminal,
// and never with --no-color or with $NO_COLOR set to anything (no-color.org).
func useColor(cmd *cli.Command, w io.Writer) bool { return colorAllowed(cmd) && isTerminal(w) }

// colorAllowed reports whether neither --no-color nor $NO_COLOR forbids
// colours.
func colorAllowed(cmd *cli.Command) bool { return os.Getenv("NO_COLOR") == "" && !cmd.Bool("no-color") }

// ANSI colours, as SGR parameters.
const (
	colorRed    = "31"
	colorGreen  = "32"
	colorYellow = "33"
	colorCyan   = "36"
)

// paint wraps s in the colour code, or returns it as it is when code is "".
func paint(s, code string) string {
	if code == "" || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
