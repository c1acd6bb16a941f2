package streams

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one prepared call of a Lua script. A zero scriptCall (nil
// script) is skipped: its command is returned with an error.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// errSkipped marks the command of a call that was not sent.
var errSkipped = fmt.Errorf("streams: call not sent")

// runScripts sends every call in one pipeline, so many calls cost one
// round trip per Redis node, and returns each call's command in order.
// Calls refused because the server does not know the script (it restarted,
// failed over, or a node joined) are sent again once the script is loaded
// (on every master of a cluster).
func runScripts(ctx context.Context, rdb redis.UniversalClient, calls []scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	send := func(idx []int) {
		_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range idx {
				c := calls[i]
				cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
			}
			return nil
		})
	}
	idx := make([]int, 0, len(calls))
	for i, c := range calls {
		if c.script == nil {
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(errSkipped)
			cmds[i] = cmd
			continue
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return cmds
	}
	send(idx)
	var again []int
	var load []*redis.Script
	for _, i := range idx {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			again = append(again, i)
			if s := calls[i].script; !containsScript(load, s) {
				load = append(load, s)
			}
		}
	}
	if len(again) == 0 {
		return cmds
	}
	var failed []*redis.Script
	for _, s := range load {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			failed = append(failed, s)
			for _, i := range again {
				if calls[i].script == s {
					cmds[i].SetErr(fmt.Errorf("load script: %w", err))
				}
			}
		}
	}
	resend := again[:0]
	for _, i := range again {
		if !containsScript(failed, calls[i].script) {
			resend = append(resend, i)
		}
	}
	if len(resend) > 0 {
		send(resend)
	}
	return cmds
}

func containsScript(list []*redis.Script, s *redis.Script) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
