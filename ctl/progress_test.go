package ctl

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v3"
)

// screen is a minimal terminal: it understands text, "\n", "\r" and the
// erase-line sequence "\x1b[2K", drops colour sequences, and fails on
// any other control character.
type screen struct {
	t     *testing.T
	lines []string // finished lines
	cur   []rune   // the line the cursor is on
	col   int
}

var sgr = regexp.MustCompile(`^\x1b\[[0-9;]*m`)

func (s *screen) Write(b []byte) (int, error) {
	in := string(b)
	for len(in) > 0 {
		switch {
		case strings.HasPrefix(in, "\x1b[2K"):
			s.cur, in = nil, in[len("\x1b[2K"):]
		case sgr.MatchString(in):
			in = in[len(sgr.FindString(in)):]
		case in[0] == '\r':
			s.col, in = 0, in[1:]
		case in[0] == '\n':
			s.lines = append(s.lines, string(s.cur))
			s.cur, s.col, in = nil, 0, in[1:]
		case in[0] < ' ':
			s.t.Fatalf("screen: unexpected control character %q in %q", in[0], b)
		default:
			r := []rune(in)[0]
			for len(s.cur) < s.col {
				s.cur = append(s.cur, ' ')
			}
			if s.col < len(s.cur) {
				s.cur[s.col] = r
			} else {
				s.cur = append(s.cur, r)
			}
			s.col++
			in = in[len(string(r)):]
		}
	}
	return len(b), nil
}

// show returns every line on the screen, the cursor's line last.
func (s *screen) show() []string { return append(append([]string(nil), s.lines...), string(s.cur)) }

// clock is a fake clock advanced by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestProgressOnTerminal(t *testing.T) {
	scr := &screen{t: t}
	clk := &clock{time.Unix(0, 0)}
	p := newProgressOn(scr, true, false, func() int { return 60 }, clk.now)
	out := p.Writer(scr) // stdout and stderr on the same terminal

	p.Update(span{text: "3 tasks: "}, span{"3 waiting", colorYellow})
	if got, want := scr.show(), []string{`| 3 tasks: 3 waiting (0s)`}; !cmp.Equal(got, want) {
		t.Fatalf("after the first Update, screen = %q, want %q", got, want)
	}
	clk.t = clk.t.Add(2 * time.Second)
	p.Update(span{text: "3 tasks: "}, span{"1 running", colorCyan}, span{text: ", "}, span{"2 waiting", colorYellow})
	io.WriteString(out, "web1 | hello\n")
	clk.t = clk.t.Add(1500 * time.Millisecond)
	p.Update(span{text: "3 tasks: "}, span{"3 succeeded", colorGreen})
	io.WriteString(out, "web2 | partial ")
	io.WriteString(out, "line\n")
	want := []string{"web1 | hello", "web2 | partial line", `\ 3 tasks: 3 succeeded (3s)`}
	if got := scr.show(); !cmp.Equal(got, want) {
		t.Errorf("screen = %q, want %q (output above one status line updated in place)", got, want)
	}
	p.Done(span{text: "3 tasks done: "}, span{"3 succeeded", colorGreen})
	want = []string{"web1 | hello", "web2 | partial line", "3 tasks done: 3 succeeded", ""}
	if got := scr.show(); !cmp.Equal(got, want) {
		t.Errorf("after Done, screen = %q, want %q (status line erased, final line printed)", got, want)
	}
}

func TestProgressFitsTheTerminal(t *testing.T) {
	scr := &screen{t: t}
	clk := &clock{time.Unix(0, 0)}
	p := newProgressOn(scr, true, true, func() int { return 30 }, clk.now)
	p.Update(span{text: "waiting for workers: "}, span{"webservers 1/2", colorYellow}, span{text: ", "}, span{"databases 0/1", colorYellow})
	got := scr.show()
	if len(got) != 1 || len([]rune(got[0])) > 29 {
		t.Fatalf("status line = %q (%d columns), want one line of at most 29 columns", got, len([]rune(got[len(got)-1])))
	}
	if !strings.HasSuffix(got[0], "… (0s)") {
		t.Errorf("status line = %q, want it cut with … before the time", got[0])
	}
}

func TestProgressColour(t *testing.T) {
	for _, tt := range []struct {
		tty, color bool
		want       bool
	}{{true, true, true}, {true, false, false}, {false, true, false}} {
		var b bytes.Buffer
		p := newProgressOn(&b, tt.tty, tt.color, func() int { return 80 }, time.Now)
		p.Update(span{"1 failed", colorRed})
		p.Done(span{"1 failed", colorRed})
		if got := strings.Contains(b.String(), "\x1b[31m"); got != tt.want {
			t.Errorf("tty %v, color %v: coloured = %v, want %v (%q)", tt.tty, tt.color, got, tt.want, b.String())
		}
	}
}

// Off a terminal: a plain line per change of status, nothing else.
func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	p := newProgressOn(&b, false, true, func() int { return 0 }, time.Now)
	var out bytes.Buffer
	w := p.Writer(&out)
	p.Update(span{text: "2 tasks: "}, span{"2 waiting", colorYellow})
	p.Update(span{text: "2 tasks: "}, span{"2 waiting", colorYellow})
	io.WriteString(w, "web1 | hi\n")
	p.Update(span{text: "2 tasks: "}, span{"1 running", colorCyan}, span{text: ", "}, span{"1 succeeded", colorGreen})
	p.Update(span{text: "2 tasks: "}, span{"2 succeeded", colorGreen})
	p.Update(span{text: "2 tasks: "}, span{"2 succeeded", colorGreen})
	p.Done(span{text: "2 tasks: "}, span{"2 succeeded", colorGreen}) // the same as the last status: not repeated
	p.Done(span{text: "all done"})
	want := "2 tasks: 2 waiting\n2 tasks: 1 running, 1 succeeded\n2 tasks: 2 succeeded\nall done\n"
	if got := b.String(); got != want {
		t.Errorf("progress off a terminal wrote %q, want %q", got, want)
	}
	if got := out.String(); got != "web1 | hi\n" {
		t.Errorf("output through Writer = %q, want it unchanged", got)
	}
}

func TestCountSpans(t *testing.T) {
	got := spansText(countSpans(map[string]int{"running": 1, "timed_out": 2, "waiting": 0, "succeeded": 3}, taskStateOrder))
	if want := "1 running, 3 succeeded, 2 timed out"; got != want {
		t.Errorf("countSpans = %q, want %q", got, want)
	}
}

func TestTerminalDetection(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	// /dev/null is a character device, but not a terminal.
	if isTerminal(devnull) || terminalWidth(devnull) != 0 {
		t.Errorf("%s is taken for a terminal", os.DevNull)
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is taken for a terminal")
	}
}

func TestColorAllowed(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		noColor string
		want    bool
	}{
		{[]string{"x"}, "", true},
		{[]string{"x", "--no-color"}, "", false},
		{[]string{"x"}, "1", false},
		{[]string{"x", "sub", "--no-color"}, "", false}, // the global flag, after a subcommand
	} {
		t.Setenv("NO_COLOR", tt.noColor)
		var got bool
		action := func(_ context.Context, cmd *cli.Command) error { got = colorAllowed(cmd); return nil }
		root := &cli.Command{Name: "x", Flags: []cli.Flag{&cli.BoolFlag{Name: "no-color"}}, Action: action,
			Commands: []*cli.Command{{Name: "sub", Action: action}}}
		if err := root.Run(context.Background(), tt.args); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%v with NO_COLOR=%q: colorAllowed = %v, want %v", tt.args, tt.noColor, got, tt.want)
		}
	}
}
