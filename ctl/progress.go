package ctl

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v3"
)

// progress shows how a long wait is going (agents coming up, the tasks of a
// fan-out) on standard error, so that standard output stays what scripts
// parse.
//
// On a terminal it keeps one status line at the bottom, rewritten in place
// (carriage return, erase line) with a spinner and the time waited; output
// written through [progress.Writer] meanwhile appears above it. Anywhere
// else (a pipe, a file, CI) it prints a plain line each time the status
// changes, with no control characters. Colours follow [useColor].
//
// A progress is safe for concurrent use. Call Done when the wait is over.
type progress struct {
	w     io.Writer
	tty   bool
	color bool
	width func() int
	now   func() time.Time
	start time.Time

	mu     sync.Mutex
	status []span // the current status
	plain  string // its text, to tell changes
	shown  bool   // a status line is on screen (terminal only)
}

// span is a piece of a status line, coloured on a terminal when color is
// set.
type span struct{ text, color string }

// spinner frames, one every spinEvery.
const (
	spinner   = `|/-\`
	spinEvery = 150 * time.Millisecond
)

// newProgress returns a progress on cmd's standard error.
func newProgress(cmd *cli.Command) *progress {
	w := cmd.Root().ErrWriter
	return newProgressOn(w, isTerminal(w), useColor(cmd, w), func() int { return terminalWidth(w) }, time.Now)
}

func newProgressOn(w io.Writer, tty, color bool, width func() int, now func() time.Time) *progress {
	return &progress{w: w, tty: tty, color: color && tty, width: width, now: now, start: now()}
}

// Update sets the status. On a terminal it redraws the line (so calling it
// at every poll keeps the spinner turning); elsewhere it prints the status
// only if its text changed.
func (p *progress) Update(status ...span) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
	text := spansText(status)
	if !p.tty {
		if text != p.plain {
			fmt.Fprintln(p.w, text)
		}
		p.plain = text
		return
	}
	p.plain = text
	p.draw()
}

// draw writes the status line over the current one. p.mu is held.
func (p *progress) draw() {
	if len(p.status) == 0 {
		return
	}
	elapsed := p.now().Sub(p.start)
	frame := spinner[int(elapsed/spinEvery)%len(spinner)]
	head := fmt.Sprintf("%c ", frame)
	tail := fmt.Sprintf(" (%s)", elapsed.Truncate(time.Second))
	// Stay within one row: a wrapped line cannot be rewritten in place.
	room := 79
	if w := p.width(); w > 0 {
		room = w - 1
	}
	room -= len(head) + len(tail)
	var b strings.Builder
	b.WriteString("\r\x1b[2K")
	b.WriteString(head)
	for _, s := range p.status {
		if room <= 0 {
			break
		}
		text := s.text
		if n := utf8.RuneCountInString(text); n > room {
			text = string([]rune(text)[:max(room-1, 0)]) + "…"
		}
		room -= utf8.RuneCountInString(text)
		if p.color {
			text = paint(text, s.color)
		}
		b.WriteString(text)
	}
	b.WriteString(tail)
	io.WriteString(p.w, b.String())
	p.shown = true
}

// clear erases the status line, if one is on screen. p.mu is held.
func (p *progress) clear() {
	if p.shown {
		io.WriteString(p.w, "\r\x1b[2K")
		p.shown = false
	}
}

// Println prints a line of its own (above the status line on a terminal).
func (p *progress) Println(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintln(p.w, line)
	if p.tty {
		p.draw()
	}
}

// Done ends the wait: the status line is erased, then final, if not
// empty, is printed as a line of its own (off a terminal, unless it is the
// status printed last).
func (p *progress) Done(final ...span) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.status = nil
	text := spansText(final)
	if len(final) == 0 || (!p.tty && text == p.plain) {
		return
	}
	p.plain = text
	if p.color {
		text = ""
		for _, s := range final {
			text += paint(s.text, s.color)
		}
	}
	fmt.Fprintln(p.w, text)
}

// Writer returns a writer for output that goes on while the status line
// shows: on a terminal, the line is erased before each write to w and drawn
// again after a write that ends a line. w is usually stdout or stderr.
func (p *progress) Writer(w io.Writer) io.Writer {
	if !p.tty {
		return w
	}
	return progressWriter{p, w}
}

type progressWriter struct {
	p *progress
	w io.Writer
}

func (pw progressWriter) Write(b []byte) (int, error) {
	p := pw.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	n, err := pw.w.Write(b)
	if len(b) > 0 && b[len(b)-1] == '\n' {
		p.draw()
	}
	return n, err
}

func spansText(spans []span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.text)
	}
	return b.String()
}

// stateColor is the colour of a task or worker state in a status line.
func stateColor(state string) string {
	switch state {
	case "succeeded", "healthy", "left":
		return colorGreen
	case "running", "draining", "starting":
		return colorCyan
	case "waiting", "expected", "stopping", "retrying":
		return colorYellow
	}
	return colorRed // failed, timed out, expired, cancelled, dead, unhealthy
}

// countSpans renders counts by state as "2 running, 1 succeeded", in the
// order given, leaving out states with a count of zero.
func countSpans(counts map[string]int, order []string) []span {
	var out []span
	for _, st := range order {
		n := counts[st]
		if n == 0 {
			continue
		}
		if len(out) > 0 {
			out = append(out, span{text: ", "})
		}
		out = append(out, span{fmt.Sprintf("%d %s", n, strings.ReplaceAll(st, "_", " ")), stateColor(st)})
	}
	return out
}
