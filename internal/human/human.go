// Package human formats values for people: as they were configured, not as Go prints them.
package human

import (
	"strings"
	"time"
)

// Duration writes 15m, 1h and 1h30m rather than 15m0s, 1h0m0s and 1h30m0s; the result
// still parses with time.ParseDuration.
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
