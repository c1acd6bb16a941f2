package streams

import (
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Refusal is Redis refusing a command because of its own state (out of
// memory, a read-only replica, loading its data...), rather than because
// of the command: retrying later, or elsewhere, can succeed.
type Refusal struct {
	// Code is the first word of Redis' reply: "OOM", "READONLY", ...
	Code string
	// Reply is Redis' reply as it came; Said is its first sentence,
	// without the name of the script that got it.
	Reply, Said string
	// Meaning says what the condition is, for a user.
	Meaning string
	// Fix says what to do about it.
	Fix string
}

// refusals maps the first word of an error reply to what it means and what
// to do. Replies not listed are errors in the command itself (a wrong
// type, a script error) and are reported as they are.
var refusals = map[string]struct{ meaning, fix string }{
	"OOM": {"Redis is out of memory (used memory is above maxmemory) and refuses writes",
		"free memory in Redis (celeroot events archive --trim removes archived history) or raise its maxmemory, then retry"},
	"READONLY": {"this Redis is a read-only replica and refuses writes",
		"point --redis at the master (or use a redis+sentinel:// URL, which finds it), then retry"},
	"MASTERDOWN": {"this Redis is a replica that lost its link to the master and serves nothing meanwhile",
		"bring the master back or point --redis at the current master, then retry"},
	"LOADING": {"Redis is loading its data set into memory and answers no commands until it is done",
		"wait until it has loaded (INFO persistence shows loading:0), then retry"},
	"BUSY": {"Redis is busy running a script and answers no other commands",
		"wait for the script to end (or stop it with SCRIPT KILL), then retry"},
	"MISCONF": {"Redis cannot save its data to disk and refuses writes (stop-writes-on-bgsave-error)",
		"fix the cause in the Redis log (disk space, permissions), then retry"},
	"CLUSTERDOWN": {"the Redis Cluster is down: some hash slots have no reachable master",
		"check CLUSTER INFO on a node, bring the failed masters back or fail over to their replicas, then retry"},
	"TRYAGAIN": {"the Redis Cluster is moving the keys of this command between nodes",
		"retry in a moment"},
	"NOAUTH": {"Redis requires a password and none was given",
		"set the password in the URL or in $" + EnvPassword},
	"WRONGPASS": {"Redis rejected the user name or password",
		"set the right password in the URL or in $" + EnvPassword},
	"NOPERM": {"the Redis user may not run this command or use these keys (ACL)",
		"grant the user the commands and the celeroot:<cluster>:* keys with ACL SETUSER, or connect as another user"},
}

// Refused reports whether err is (or wraps) an error reply of Redis saying
// that it refuses commands for now, and which.
func Refused(err error) (Refusal, bool) {
	var rerr redis.Error
	if !errors.As(err, &rerr) || errors.Is(err, redis.Nil) {
		return Refusal{}, false
	}
	said := rerr.Error()
	code, _, _ := strings.Cut(said, " ")
	r, ok := refusals[code]
	if !ok {
		return Refusal{}, false
	}
	first, _, _ := strings.Cut(said, " script: ")
	return Refusal{Code: code, Reply: said, Said: first, Meaning: r.meaning, Fix: r.fix}, true
}
