// Package agent is the worker daemon that runs on every managed host.
//
// Run registers the worker, heartbeats, reads the worker's dispatch stream
// and its role's queue through the agents consumer group, runs each task as
// an argv (never through a shell), streams the output as task.log events to
// the task's log stream, and records the result through the fenced finish
// script before acknowledging the entry. Optionally it also runs a
// projector, so the projections need no process of their own.
//
// Run is one oklog/run.Group: every component is an actor with a Run(ctx)
// that returns when ctx is cancelled; nothing outlives Run. On cancellation
// (SIGTERM) the agent stops reading, lets running tasks finish within
// Config.ShutdownTimeout, records and acknowledges them, and announces that
// it left.
package agent
