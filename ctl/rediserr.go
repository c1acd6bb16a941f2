package ctl

import (
	"errors"
	"io"
	"net"
	"strings"

	"github.com/celeroot/celeroot/streams"
)

// redisError is a command's error that came from Redis refusing it, or
// from the connection to Redis breaking, told in one line: what Redis
// said, what it means, and what to do.
type redisError struct {
	meaning string // "Redis is out of memory ..."
	fix     string // "free memory ..., then retry"
	said    string // Redis' reply, or the network error
	network bool   // said is a network error, not a reply
	during  string // what the command was doing, "" if nothing to add
	err     error
}

func (e redisError) Error() string {
	var b strings.Builder
	b.WriteString(e.meaning)
	b.WriteString(": ")
	b.WriteString(e.fix)
	b.WriteString(" (")
	if e.during != "" {
		b.WriteString(e.during)
		b.WriteString("; ")
	}
	if e.network {
		b.WriteString("error: ")
	} else {
		b.WriteString("Redis said: ")
	}
	b.WriteString(e.said)
	b.WriteString(")")
	return b.String()
}

func (e redisError) Unwrap() error { return e.err }

// lostConnection is what a broken connection means once the command had
// reached Redis (a failure to connect at all is told by streams.Connect).
const (
	lostMeaning = "the connection to Redis broke while the command ran"
	lostFix     = "check that Redis is running and reachable; a write in flight may or may not have been applied, so look (task list, config history) before you retry"
)

// explainRedis turns an error that comes from Redis' state (out of
// memory, read-only replica, loading, cluster down, credentials, a broken
// connection) into a redisError; other errors are returned as they are.
func explainRedis(err error) error {
	if err == nil || errors.Is(err, streams.ErrUnreachable) || errors.Is(err, streams.ErrAuth) {
		return err // already told in full when connecting
	}
	if r, ok := streams.Refused(err); ok {
		return redisError{meaning: r.Meaning, fix: r.Fix, said: r.Said, during: during(err.Error(), r.Reply), err: err}
	}
	var said string
	var nerr *net.OpError
	switch {
	case errors.As(err, &nerr) && (nerr.Op == "dial" || nerr.Op == "read" || nerr.Op == "write"):
		said = nerr.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		said = innermost(err).Error()
	default:
		return err
	}
	return redisError{meaning: lostMeaning, fix: lostFix, said: said, network: true, during: during(err.Error(), said), err: err}
}

// during is msg, the whole error's text, without said, the part that came
// from Redis: what the command was doing, on one line.
func during(msg, said string) string {
	msg = strings.ReplaceAll(msg, ": "+said, "")
	msg = strings.ReplaceAll(msg, said, "")
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		if line = strings.Trim(line, " :;."); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}

// innermost is the error at the end of err's chain of single wraps.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
