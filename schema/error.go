package schema

import (
	"fmt"
	"strings"
)

// Error is one problem found in a document: where it is, what is wrong and
// how to fix it. Loading and validation return every problem they find as
// a list of Errors, sorted by file and position.
type Error struct {
	// File is the file name as given to Load or LoadPath ("<stdin>" for
	// standard input). It is empty for parameters given on the command line.
	File string
	// Line and Col are 1-based; Col counts characters, not bytes. They are
	// 0 when the error concerns the whole file (too large, no documents).
	Line, Col int
	// Pointer is the JSON pointer (RFC 6901) of the offending value, such as
	// /spec/workers/0/replicas; empty for problems with the file itself.
	Pointer string
	// Msg says what is wrong.
	Msg string
	// Hint says how to fix it; it may be empty.
	Hint string
}

// Error renders the error as "file:line:col: pointer: msg (hint: hint)",
// leaving out the parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
		}
		b.WriteString(": ")
	}
	if e.Pointer != "" {
		b.WriteString(e.Pointer)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// position is a place in a file.
type position struct {
	line, col int
}

// pointerJoin appends one reference token to a JSON pointer, escaping it.
func pointerJoin(ptr, token string) string {
	token = strings.ReplaceAll(token, "~", "~0")
	token = strings.ReplaceAll(token, "/", "~1")
	return ptr + "/" + token
}

// pointerParent returns the pointer of the value that contains ptr, and
// ptr's last reference token, unescaped.
func pointerParent(ptr string) (parent, token string) {
	i := strings.LastIndexByte(ptr, '/')
	if i < 0 {
		return "", ""
	}
	token = strings.ReplaceAll(ptr[i+1:], "~1", "/")
	token = strings.ReplaceAll(token, "~0", "~")
	return ptr[:i], token
}

// pointerWithin reports whether ptr is anc or inside it.
func pointerWithin(ptr, anc string) bool {
	return ptr == anc || strings.HasPrefix(ptr, anc+"/")
}
