package human

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		15 * time.Minute: "15m", time.Hour: "1h", 4 * time.Hour: "4h", 90 * time.Minute: "1h30m",
		30 * time.Second: "30s", 90 * time.Second: "1m30s", 2*time.Hour + 5*time.Second: "2h0m5s", 0: "0s",
	} {
		got := Duration(d)
		if got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("%q does not parse back to %v", got, d)
		}
	}
}
