// Package events is celeroot's event vocabulary: the envelope every fact is
// wrapped in, the typed payloads, and the codec to and from Redis stream
// entry fields.
//
// Everything celeroot knows (a worker registering, a heartbeat, a task being
// submitted, started, logging and finishing) is an event appended to a
// stream. Events are immutable, identified by a ULID that is unique across
// the cluster, and named by a versioned type ("task.submitted.v1"). Unlike a
// generic message bus envelope, the type name carries the payload's schema
// version: a decoder refuses versions it does not know instead of guessing,
// and old versions are upcast to the current one on decode.
//
// The package is pure data: it imports only the standard library and ulid,
// never talks to Redis and holds no mutable state. IDs and time are injected
// through a Source so that tests are deterministic.
//
//	src := events.Source{Cluster: "prod", Actor: "cli:alice"}
//	env := src.New(events.TaskSubmitted{TaskID: id, Task: "command", Argv: []string{"uname", "-a"}})
//	fields, err := events.Encode(env)   // XADD ... fields
//	back, err := events.Decode(fields)   // from XREADGROUP
//
// Consumers must be idempotent on Envelope.ID: delivery is at-least-once.
package events
