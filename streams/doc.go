// Package streams is celeroot's Redis Streams layer: every key name, the
// client built from a URL, appending events, consumer-group reading with
// dead-lettering, the Lua scripts that fence task attempts, and replay.
//
// It is the only package besides projections that talks to go-redis.
// Domain code above it sees events.Envelope values and concrete types from
// here (Log, Reader), never raw stream commands.
//
// Redis Cluster is a first-class target: every Lua script and multi-key
// command touches keys of one hash tag (see keys.go), and blocking reads use
// a finite BLOCK in a loop that checks the context, because go-redis does not
// interrupt a blocking read on cancellation.
package streams
