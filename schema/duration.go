package schema

import (
	"encoding/json"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("30s",
// "1h30m"). Documents only hold non-negative durations.
type Duration struct {
	time.Duration
}

// MarshalJSON writes the duration as a string such as "1h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.Duration.String())
}

// UnmarshalJSON reads a duration string. A value that is not one leaves d
// unchanged and reports no error: Load decodes documents leniently and the
// validator reports the bad value with its position.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	if v, err := time.ParseDuration(s); err == nil {
		d.Duration = v
	}
	return nil
}
