package streams

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/celeroot/celeroot/events"
)

// Line is one event as audit tooling reads it: the JSON-lines format of
// `celeroot events replay -o jsonl` and of the archive. The field order is
// part of the format, which is stable: fields may be added, never renamed
// or removed.
type Line struct {
	Stream      string          `json:"stream"`
	EntryID     string          `json:"entry_id"`
	ID          string          `json:"id,omitempty"`
	Type        string          `json:"type,omitempty"`
	Time        string          `json:"time,omitempty"`
	Cluster     string          `json:"cluster,omitempty"`
	Actor       string          `json:"actor,omitempty"`
	Correlation string          `json:"correlation,omitempty"`
	Causation   string          `json:"causation,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	// Error says why an entry did not decode; Fields are then its raw
	// fields, so nothing of it is lost.
	Error  string            `json:"error,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

// LineOf returns the line of an entry.
func LineOf(e Entry) Line {
	l := Line{Stream: e.Stream, EntryID: e.ID}
	if e.Err != nil {
		l.Error = e.Err.Error()
		if len(e.Fields) > 0 {
			l.Fields = map[string]string{}
			for k, v := range e.Fields {
				l.Fields[k] = fmt.Sprint(v)
			}
		}
		return l
	}
	env := e.Envelope
	l.ID, l.Type, l.Cluster, l.Actor = env.ID.String(), env.Type, env.Cluster, env.Actor
	l.Time = env.Time.UTC().Format(time.RFC3339Nano)
	l.Correlation, l.Causation = env.Correlation, env.Causation
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env.Payload); err == nil {
		l.Data = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	}
	return l
}

// EncodeLine returns the JSON line of an entry, with its final newline.
// An entry read from the archive is returned as it was written there.
func EncodeLine(e Entry) []byte {
	if e.Line != nil {
		return e.Line
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(LineOf(e)) // a Line always encodes
	return b.Bytes()
}

// DecodeLine parses one JSON line back into an entry: its envelope decoded
// as from the stream (validation and upcasting included), or Err set as
// for any entry that does not decode. Entry.Line keeps the line verbatim.
func DecodeLine(b []byte) (Entry, error) {
	var l Line
	if err := json.Unmarshal(b, &l); err != nil {
		return Entry{}, fmt.Errorf("not an event line: %w", err)
	}
	if l.Stream == "" || l.EntryID == "" {
		return Entry{}, errors.New("not an event line: no stream or entry_id")
	}
	if _, _, ok := parseEntryID(l.EntryID); !ok {
		return Entry{}, fmt.Errorf("not an event line: entry_id %q", l.EntryID)
	}
	line := append([]byte(nil), b...)
	if len(line) == 0 || line[len(line)-1] != '\n' {
		line = append(line, '\n')
	}
	e := Entry{Stream: l.Stream, ID: l.EntryID, Line: line}
	if l.Error != "" {
		e.Err = errors.New(l.Error)
		if len(l.Fields) > 0 {
			e.Fields = map[string]any{}
			names := make([]string, 0, len(l.Fields))
			for k := range l.Fields {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				e.Fields[k] = l.Fields[k]
			}
		}
		return e, nil
	}
	fields := map[string]any{
		events.FieldID: l.ID, events.FieldType: l.Type, events.FieldTime: l.Time,
		events.FieldCluster: l.Cluster, events.FieldActor: l.Actor, events.FieldData: string(l.Data),
	}
	if l.Correlation != "" {
		fields[events.FieldCorrelation] = l.Correlation
	}
	if l.Causation != "" {
		fields[events.FieldCausation] = l.Causation
	}
	e.Envelope, e.Err = events.Decode(fields)
	return e, nil
}
