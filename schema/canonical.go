package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Canonical returns the canonical JSON form of a document: defaults
// applied, object keys sorted, no insignificant white space, no HTML
// escaping. Two documents that differ only in YAML formatting, comments,
// key order, quoting, or in spelling out a default, have the same
// canonical form. The order of lists (workers, schedules, command
// arguments) is significant and kept.
func Canonical(doc Document) ([]byte, error) {
	var cp Document
	switch d := doc.(type) {
	case *Cluster:
		c := &Cluster{}
		if err := roundTrip(d, c); err != nil {
			return nil, err
		}
		c.setDefaults()
		cp = c
	case *Task:
		t := &Task{}
		if err := roundTrip(d, t); err != nil {
			return nil, err
		}
		t.setDefaults()
		cp = t
	default:
		return nil, fmt.Errorf("schema: canonical form of %T", doc)
	}
	return canonicalJSON(cp)
}

// canonicalJSON encodes v with object keys sorted, no insignificant white
// space and no HTML escaping.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// Marshal sorts map keys but writes struct fields in declaration
	// order; decoding into plain values and encoding again sorts both.
	plain, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(plain); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Hash returns the hex SHA-256 of the document's canonical form (see
// Canonical): re-applying an unchanged configuration, however it is
// formatted, yields the same hash. It returns "" if doc cannot be encoded.
func Hash(doc Document) string {
	b, err := Canonical(doc)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func roundTrip(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(to)
}

// setDefaults fills the optional fields that are not set.
func (c *Cluster) setDefaults() {
	c.Spec.Retention.normalize()
	for i := range c.Spec.Schedules {
		s := &c.Spec.Schedules[i]
		if s.Timezone == "" {
			s.Timezone = DefaultTimezone
		}
		if s.Overlap == "" {
			s.Overlap = OverlapAllow
		}
		if s.Missed == "" {
			s.Missed = MissedSkip
		}
		if s.Missed == MissedAll && s.MissedWindow.Duration == 0 {
			s.MissedWindow.Duration = DefaultMissedWindow
		}
	}
}

// setDefaults fills the optional fields that are not set.
func (t *Task) setDefaults() {
	s := &t.Spec
	if s.Timeout.Duration == 0 {
		s.Timeout.Duration = DefaultTimeout
	}
	if s.Retry.MaxAttempts == 0 {
		s.Retry.MaxAttempts = DefaultMaxAttempts
	}
	if s.Retry.Backoff.Duration == 0 {
		s.Retry.Backoff.Duration = DefaultBackoff
	}
	if s.Retry.MaxBackoff.Duration == 0 {
		s.Retry.MaxBackoff.Duration = DefaultMaxBackoff
	}
	s.Action.setDefaults()
	if s.Check != nil {
		s.Check.setDefaults()
	}
}

func (a *Action) setDefaults() {
	if a.Shell != nil && a.Shell.Interpreter == "" {
		a.Shell.Interpreter = DefaultInterpreter
	}
	if a.Package != nil {
		if a.Package.State == "" {
			a.Package.State = "present"
		}
		if a.Package.Manager == "" {
			a.Package.Manager = "auto"
		}
	}
}
