package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Stream entry field names. An entry is a flat list of these fields; data
// holds the payload as JSON.
const (
	FieldID          = "id"
	FieldType        = "type"
	FieldTime        = "time"
	FieldCluster     = "cluster"
	FieldActor       = "actor"
	FieldCorrelation = "corr"
	FieldCausation   = "cause"
	FieldData        = "data"
)

// MaxPayloadBytes bounds the JSON payload of one event. Larger payloads
// (a huge parameter, a log chunk over the limit) are refused on encode and
// on decode, so one entry can never exhaust a consumer.
const MaxPayloadBytes = 256 << 10

// Sentinel errors, matched with errors.Is on a *DecodeError.
var (
	// ErrMalformed: a field is missing, of the wrong shape or fails validation.
	ErrMalformed = errors.New("events: malformed entry")
	// ErrUnknownType: the type name is not one this build knows at any version.
	ErrUnknownType = errors.New("events: unknown event type")
	// ErrUnsupportedVersion: the type is known but not at this version
	// (written by a newer celeroot).
	ErrUnsupportedVersion = errors.New("events: unsupported event version")
	// ErrTooLarge: the payload exceeds MaxPayloadBytes.
	ErrTooLarge = errors.New("events: payload too large")
)

// DecodeError reports why an entry could not be decoded.
type DecodeError struct {
	// Field is the entry field at fault ("type", "data", ...).
	Field string
	// Kind is one of ErrMalformed, ErrUnknownType, ErrUnsupportedVersion, ErrTooLarge.
	Kind error
	// Detail says what is wrong in words.
	Detail string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%v: field %q: %s", e.Kind, e.Field, e.Detail)
}

// Unwrap lets errors.Is match the Kind sentinel.
func (e *DecodeError) Unwrap() error { return e.Kind }

func malformed(field, format string, args ...any) error {
	return &DecodeError{Field: field, Kind: ErrMalformed, Detail: fmt.Sprintf(format, args...)}
}

// registry maps every known type name to a constructor of its payload.
var registry = map[string]func() Payload{
	TypeWorkerRegistered: func() Payload { return &WorkerRegistered{} },
	TypeWorkerHeartbeat:  func() Payload { return &WorkerHeartbeat{} },
	TypeWorkerLeft:       func() Payload { return &WorkerLeft{} },
	TypeTaskSubmitted:    func() Payload { return &TaskSubmitted{} },
	TypeTaskStarted:      func() Payload { return &TaskStarted{} },
	TypeTaskLog:          func() Payload { return &TaskLog{} },
	TypeTaskFinished:     func() Payload { return &TaskFinished{} },
	TypeConfigApplied:    func() Payload { return &ConfigApplied{} },
	TypeTaskDeadLettered: func() Payload { return &TaskDeadLettered{} },
	TypeTaskCancel:       func() Payload { return &TaskCancel{} },
	TypeTaskEnded:        func() Payload { return &TaskEnded{} },
	TypeTaskRedriven:     func() Payload { return &TaskRedriven{} },
	TypeWorkerDrain:      func() Payload { return &WorkerDrain{} },
	TypeWorkerExpected:   func() Payload { return &WorkerExpected{} },
	TypeWorkerRemoved:    func() Payload { return &WorkerRemoved{} },
	TypeScheduleFired:    func() Payload { return &ScheduleFired{} },
	TypeSchedulePaused:   func() Payload { return &SchedulePaused{} },
	TypeScheduleResumed:  func() Payload { return &ScheduleResumed{} },
	TypeScheduleSkipped:  func() Payload { return &ScheduleSkipped{} },
	TypeConfigAnnounced:  func() Payload { return &ConfigAnnounced{} },
}

// Types returns every known type name.
func Types() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	return out
}

var typeName = regexp.MustCompile(`^([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)\.v([1-9][0-9]{0,5})$`)

// Encode turns an envelope into stream entry fields (name, value, ...),
// ready for XADD. It refuses an envelope whose payload does not validate.
func Encode(e Envelope) ([]any, error) {
	if e.Payload == nil {
		return nil, fmt.Errorf("encode: %w", malformed(FieldData, "no payload"))
	}
	if e.Type == "" {
		e.Type = e.Payload.EventType()
	}
	if e.Type != e.Payload.EventType() {
		return nil, fmt.Errorf("encode: %w", malformed(FieldType, "type %q does not match payload type %q", e.Type, e.Payload.EventType()))
	}
	if err := e.Payload.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.Type, malformed(FieldData, "%v", err))
	}
	data, err := json.Marshal(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.Type, err)
	}
	if len(data) > MaxPayloadBytes {
		return nil, fmt.Errorf("encode %s: %w", e.Type, &DecodeError{Field: FieldData, Kind: ErrTooLarge,
			Detail: fmt.Sprintf("%d bytes, limit %d", len(data), MaxPayloadBytes)})
	}
	fields := make([]any, 0, 16) // room for every field
	fields = append(fields,
		FieldID, e.ID.String(),
		FieldType, e.Type,
		FieldTime, e.Time.UTC().Format(time.RFC3339Nano),
		FieldCluster, e.Cluster,
		FieldActor, e.Actor,
	)
	if e.Correlation != "" {
		fields = append(fields, FieldCorrelation, e.Correlation)
	}
	if e.Causation != "" {
		fields = append(fields, FieldCausation, e.Causation)
	}
	return append(fields, FieldData, string(data)), nil
}

// Fields is Encode as a map, the shape go-redis returns entries in; an
// envelope that does not encode gives nil.
func Fields(e Envelope) map[string]any {
	list, err := Encode(e)
	if err != nil {
		return nil
	}
	m := make(map[string]any, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		m[list[i].(string)] = list[i+1]
	}
	return m
}

// Decode parses stream entry fields as returned by go-redis
// (XMessage.Values). Every failure is a *DecodeError.
func Decode(values map[string]any) (Envelope, error) {
	var e Envelope
	get := func(name string, need bool) (string, error) {
		v, ok := values[name]
		if !ok {
			if need {
				return "", malformed(name, "missing")
			}
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", malformed(name, "value of type %T, want string", v)
		}
		return s, nil
	}
	s, err := get(FieldID, true)
	if err != nil {
		return e, err
	}
	if e.ID, err = ulid.ParseStrict(s); err != nil {
		return e, malformed(FieldID, "%q is not a ULID: %v", trunc(s), err)
	}
	if e.Type, err = get(FieldType, true); err != nil {
		return e, err
	}
	newPayload, err := lookup(e.Type)
	if err != nil {
		return e, err
	}
	if s, err = get(FieldTime, true); err != nil {
		return e, err
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, s); err != nil {
		return e, malformed(FieldTime, "%q is not an RFC 3339 time", trunc(s))
	}
	if e.Cluster, err = get(FieldCluster, true); err != nil {
		return e, err
	}
	if e.Actor, err = get(FieldActor, false); err != nil {
		return e, err
	}
	if e.Correlation, err = get(FieldCorrelation, false); err != nil {
		return e, err
	}
	if e.Causation, err = get(FieldCausation, false); err != nil {
		return e, err
	}
	data, err := get(FieldData, true)
	if err != nil {
		return e, err
	}
	if len(data) > MaxPayloadBytes {
		return e, &DecodeError{Field: FieldData, Kind: ErrTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(data), MaxPayloadBytes)}
	}
	p := newPayload()
	if err := decodeJSON(e.Type, data, p); err != nil {
		return e, err
	}
	if err := p.Validate(); err != nil {
		return e, malformed(FieldData, "%s: %v", e.Type, err)
	}
	e.Payload = deref(p)
	return e, nil
}

// numberTypes are the payloads with free-form values, by the JSON key that
// holds them (parameters): their numbers are kept as json.Number so that
// integers survive exactly.
var numberTypes = map[string]string{TypeTaskSubmitted: `"params"`, TypeScheduleFired: `"params"`}

// decodeJSON decodes one payload: with a Decoder keeping numbers exact
// where it may hold free-form values, with the faster Unmarshal where it
// cannot (not one of numberTypes, or without their key: most tasks are
// submitted without parameters).
func decodeJSON(typ, data string, p Payload) error {
	if key, ok := numberTypes[typ]; !ok || !strings.Contains(data, key) {
		if err := json.Unmarshal([]byte(data), p); err != nil {
			var syn *json.SyntaxError
			if errors.As(err, &syn) && strings.Contains(syn.Error(), "after top-level value") {
				return malformed(FieldData, "trailing data after the JSON payload")
			}
			return malformed(FieldData, "invalid JSON for %s: %v", typ, err)
		}
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(p); err != nil {
		return malformed(FieldData, "invalid JSON for %s: %v", typ, err)
	}
	if dec.More() {
		return malformed(FieldData, "trailing data after the JSON payload")
	}
	return nil
}

// lookup finds the constructor for a type name, telling an unknown type
// from an unknown version of a known one.
func lookup(t string) (func() Payload, error) {
	if f, ok := registry[t]; ok {
		return f, nil
	}
	m := typeName.FindStringSubmatch(t)
	if m == nil {
		return nil, malformed(FieldType, "%q is not a versioned type name like \"task.started.v1\"", trunc(t))
	}
	var known []string
	for name := range registry {
		if base, v, ok := splitVersion(name); ok && base == m[1] {
			known = append(known, "v"+strconv.Itoa(v))
		}
	}
	if len(known) > 0 {
		return nil, &DecodeError{Field: FieldType, Kind: ErrUnsupportedVersion,
			Detail: fmt.Sprintf("%q: this build knows %s; upgrade celeroot to read it", t, strings.Join(known, ", "))}
	}
	return nil, &DecodeError{Field: FieldType, Kind: ErrUnknownType, Detail: fmt.Sprintf("%q", trunc(t))}
}

func splitVersion(name string) (base string, version int, ok bool) {
	m := typeName.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	v, err := strconv.Atoi(m[2])
	return m[1], v, err == nil
}

// deref turns the *T the decoder filled into the T that producers use, so
// a type switch on Payload sees the same types either way.
func deref(p Payload) Payload {
	switch v := p.(type) {
	case *WorkerRegistered:
		return *v
	case *WorkerHeartbeat:
		return *v
	case *WorkerLeft:
		return *v
	case *TaskSubmitted:
		return *v
	case *TaskStarted:
		return *v
	case *TaskLog:
		return *v
	case *TaskFinished:
		return *v
	case *ConfigApplied:
		return *v
	case *TaskDeadLettered:
		return *v
	case *TaskCancel:
		return *v
	case *TaskEnded:
		return *v
	case *TaskRedriven:
		return *v
	case *WorkerDrain:
		return *v
	case *WorkerExpected:
		return *v
	case *WorkerRemoved:
		return *v
	case *ScheduleFired:
		return *v
	case *SchedulePaused:
		return *v
	case *ScheduleResumed:
		return *v
	case *ScheduleSkipped:
		return *v
	case *ConfigAnnounced:
		return *v
	}
	return p
}

// trunc shortens hostile input before it is echoed in an error.
func trunc(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	var b bytes.Buffer
	b.WriteString(s[:max])
	b.WriteString("…")
	return b.String()
}
