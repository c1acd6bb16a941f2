package schema

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // time zones validate the same on every host

	"github.com/robfig/cron/v3"
)

// cronReference is the time from which a cron expression must fire at
// least once (within the five years the cron package searches), so that
// validation does not depend on the clock.
var cronReference = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// errCronPanic reports an expression the cron package panicked on.
var errCronPanic = errors.New("cannot parse the cron expression")

// parseCron parses a standard cron expression: five fields (minute hour
// day-of-month month day-of-week) or a descriptor (@yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly). It refuses what the cron
// package would accept but a schedule must not use: a TZ= prefix (the
// schedule has a timezone field) and @every (its slots depend on when a
// scheduler started, so several schedulers could not agree on them).
func parseCron(expr string) (s cron.Schedule, err error) {
	e := strings.TrimSpace(expr)
	switch {
	case e == "":
		return nil, errors.New("empty cron expression")
	case strings.HasPrefix(e, "TZ=") || strings.HasPrefix(e, "CRON_TZ="):
		return nil, errors.New("time zone prefixes are not supported; set the schedule's timezone field")
	case strings.HasPrefix(e, "@every"):
		return nil, errors.New("@every is not supported: its runs are not aligned to the clock; use a cron expression such as */5 * * * *")
	case strings.HasPrefix(e, "@"):
		switch e {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
		default:
			return nil, fmt.Errorf("unknown descriptor %s; use @yearly, @monthly, @weekly, @daily or @hourly", e)
		}
	default:
		if n := len(strings.Fields(e)); n != 5 {
			msg := fmt.Sprintf("expected 5 fields (minute hour day-of-month month day-of-week), found %d", n)
			if n == 6 {
				msg += "; seconds are not supported"
			}
			return nil, errors.New(msg)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%w: %q", errCronPanic, e)
		}
	}()
	s, err = cron.ParseStandard(e)
	if err != nil {
		return nil, err
	}
	if s.Next(cronReference).IsZero() {
		return nil, errors.New("the expression never fires (a day that does not exist, such as February 30?)")
	}
	return s, nil
}

// loadLocation loads an IANA time zone; "" is UTC. "Local" is refused:
// it would mean a different zone on every host.
func loadLocation(name string) (*time.Location, error) {
	switch name {
	case "":
		return time.UTC, nil
	case "Local":
		return nil, errors.New(`"Local" differs from host to host; name an IANA zone such as Europe/Paris, or UTC`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as UTC, Europe/Paris or America/New_York", name)
	}
	return loc, nil
}
