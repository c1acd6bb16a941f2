// Package projections turns events into the read models that status
// commands serve: workers and tasks.
//
// A projection here is a set of records, one per entity, each a flat map of
// fields. Reduce is a pure function from one event to the patches it makes;
// each patch writes the fields of one "guard" (a part of the record such as
// a worker's last heartbeat, or attempt 3's start) and carries the event's
// stream entry ID as its order. A guard is only overwritten by a patch of
// higher order. Because every guard is last-writer-wins by order and guards
// never overlap, applying the same events in any order, any number of
// times, yields the same record: the projection is idempotent and
// order-safe even when several projector processes share a consumer group
// and deliver an entity's events out of order.
//
// The same patches are folded in memory (Fold) for rebuilds and "as of"
// queries, and applied in Redis by one Lua script per record (Store).
// State that depends on the clock (a worker whose heartbeats stopped) is
// derived when read, never written, so nothing needs a timer or a leader.
package projections
