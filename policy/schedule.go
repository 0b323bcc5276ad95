package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule limits a policy to a weekly time window in one time zone. A window whose End is
// before its Start wraps past midnight; its weekday is the day the window opens, so a Friday
// 18:00–08:00 window covers Saturday 03:00.
type Schedule struct {
	Weekdays []string `yaml:"weekdays" json:"weekdays,omitempty"`
	Start    string   `yaml:"start" json:"start,omitempty"`
	End      string   `yaml:"end" json:"end,omitempty"`
	Timezone string   `yaml:"timezone" json:"timezone,omitempty"`
}

// window is a compiled Schedule.
type window struct {
	days       uint8 // bit per time.Weekday; 0 means every day
	start, end int   // minutes after midnight
	loc        *time.Location
}

func compileSchedule(s *Schedule) (*window, error) {
	w := &window{loc: time.UTC}
	for _, d := range s.Weekdays {
		wd, err := parseWeekday(d)
		if err != nil {
			return nil, err
		}
		w.days |= 1 << wd
	}
	var err error
	if s.Start == "" && s.End == "" {
		w.start, w.end = 0, 24*60
	} else {
		if w.start, err = parseClock(s.Start); err != nil {
			return nil, fmt.Errorf("start: %w", err)
		}
		if w.end, err = parseClock(s.End); err != nil {
			return nil, fmt.Errorf("end: %w", err)
		}
		if w.start == w.end {
			return nil, fmt.Errorf("start and end are both %s: the window would be empty", s.Start)
		}
	}
	if s.Timezone != "" {
		if w.loc, err = time.LoadLocation(s.Timezone); err != nil {
			return nil, fmt.Errorf("timezone %q: %w", s.Timezone, err)
		}
	}
	return w, nil
}

// contains reports whether t falls inside the window.
func (w *window) contains(t time.Time) bool {
	t = t.In(w.loc)
	m := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	if w.start < w.end {
		if m < w.start || m >= w.end {
			return false
		}
	} else {
		switch {
		case m >= w.start: // evening part: the window opened today
		case m < w.end: // morning part: the window opened yesterday
			day = (day + 6) % 7
		default:
			return false
		}
	}
	return w.days == 0 || w.days&(1<<day) != 0
}

var weekdayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func parseWeekday(s string) (time.Weekday, error) {
	k := strings.ToLower(s)
	if len(k) > 3 {
		k = k[:3]
	}
	if d, ok := weekdayNames[k]; ok && (len(s) == 3 || strings.EqualFold(s, time.Weekday(d).String())) {
		return d, nil
	}
	return 0, fmt.Errorf("unknown weekday %q (want mon, tue, ... or monday, tuesday, ...)", s)
}

// parseClock parses "HH:MM" or "HH" into minutes after midnight; "24:00" is the end of day.
func parseClock(s string) (int, error) {
	h, m, found := strings.Cut(s, ":")
	hh, err := strconv.Atoi(h)
	if err != nil || len(h) == 0 || len(h) > 2 {
		return 0, fmt.Errorf("invalid time of day %q (want HH:MM)", s)
	}
	mm := 0
	if found {
		if mm, err = strconv.Atoi(m); err != nil || len(m) != 2 {
			return 0, fmt.Errorf("invalid time of day %q (want HH:MM)", s)
		}
	}
	if hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("invalid time of day %q (want 00:00 to 24:00)", s)
	}
	return hh*60 + mm, nil
}
