package events

import (
	"time"

	"github.com/oklog/ulid/v2"
)

// Envelope wraps every payload with the facts needed to order, trace and
// audit it.
type Envelope struct {
	// ID is unique across the cluster and sortable by creation time.
	ID ulid.ULID
	// Type is the payload's versioned type name, such as "task.submitted.v1".
	Type string
	// Time is when the event was created, by the producer's clock (business
	// time; the stream entry ID carries the Redis server's time).
	Time time.Time
	// Cluster names the cluster (tenant) the event belongs to.
	Cluster string
	// Actor says who produced the event: "cli:alice@laptop", "agent:web1".
	Actor string
	// Correlation groups the events of one unit of work (a task or a job).
	Correlation string
	// Causation is the ID of the event that caused this one, if any.
	Causation string
	// Payload is the typed body; Payload.EventType() == Type.
	Payload Payload
}

// Payload is implemented by every event body.
type Payload interface {
	// EventType returns the versioned type name, such as "task.started.v1".
	EventType() string
	// Validate reports a missing or inconsistent field. It is called on
	// encode and on decode, so no invalid event is written or acted upon.
	Validate() error
}

// Source creates envelopes for one producer. The zero value of NewID and
// Now fall back to ulid.Make and time.Now; tests inject their own.
type Source struct {
	Cluster string
	Actor   string
	NewID   func() ulid.ULID
	Now     func() time.Time
}

// Option sets an optional envelope field in Source.New.
type Option func(*Envelope)

// WithCorrelation sets the correlation id.
func WithCorrelation(id string) Option { return func(e *Envelope) { e.Correlation = id } }

// WithCausation sets the causation id to the id of the causing event.
func WithCausation(id string) Option { return func(e *Envelope) { e.Causation = id } }

// New wraps p in an envelope with a fresh ID and the current time.
func (s Source) New(p Payload, opts ...Option) Envelope {
	newID, now := s.NewID, s.Now
	if newID == nil {
		newID = ulid.Make
	}
	if now == nil {
		now = time.Now
	}
	e := Envelope{
		ID:      newID(),
		Type:    p.EventType(),
		Time:    now().UTC(),
		Cluster: s.Cluster,
		Actor:   s.Actor,
		Payload: p,
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}
