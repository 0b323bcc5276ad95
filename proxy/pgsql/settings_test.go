package pgsql

import (
	"strings"
	"testing"
)

func TestParseSetting(t *testing.T) {
	for sql, want := range map[string]Setting{
		"SET portcullis.reason = 'fix order 2, TICKET-12'": {Name: SettingReason, Value: "fix order 2, TICKET-12"},
		"set Portcullis.Reason to 'x'":                     {Name: SettingReason, Value: "x"},
		"SET SESSION portcullis.reason = 'x'":              {Name: SettingReason, Value: "x"},
		"SET LOCAL portcullis.reason = 'x'":                {Name: SettingReason, Value: "x"},
		"RESET portcullis.reason":                          {Name: SettingReason, Reset: true},
		"SET portcullis.reason TO DEFAULT":                 {Name: SettingReason, Reset: true},
		"SHOW portcullis.reason":                           {Name: SettingReason, Show: true},
		"SET portcullis . reason = 'x'":                    {Name: SettingReason, Value: "x"},
		`SET "portcullis"."reason" = 'x'`:                  {Name: SettingReason, Value: "x"},
	} {
		got, ok, err := ParseSetting(sql)
		if !ok || err != nil || got != want {
			t.Errorf("%s: %+v %v %v", sql, got, ok, err)
		}
		if !MentionsSetting(sql) {
			t.Errorf("%s: MentionsSetting false", sql)
		}
	}
	for sql, want := range map[string]string{
		"SET portcullis.role = 'admin'":               "unrecognized Portcullis setting",
		"SELECT 1; SET portcullis.reason = 'x'":       "statement of its own",
		"SET portcullis.reason = 'x'; DELETE FROM t":  "statement of its own",
		"SET portcullis.reason = now()":               "", // not a constant: the parser refuses it, so not ours
		"SET portcullis.reason = 'a', 'b'":            "",
		"SET portcullis.reason = some_identifier_val": "",
	} {
		_, ok, err := ParseSetting(sql)
		switch {
		case want != "" && (!ok || err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v %v, want an error %q", sql, ok, err, want)
		case want == "" && ok && err != nil:
			t.Logf("%s: %v", sql, err)
		}
	}
	for _, sql := range []string{"SET search_path = public", "SELECT 'portcullis.reason'", "UPDATE t SET portcullis = 1", "SHOW ALL"} {
		if _, ok, err := ParseSetting(sql); ok || err != nil {
			t.Errorf("%s: taken as a Portcullis setting (%v)", sql, err)
		}
	}
}

// FuzzSetting: what a client sends as a Portcullis setting never panics the parser, and
// what it accepts is the one setting there is, never reaching other statements.
func FuzzSetting(f *testing.F) {
	for _, s := range []string{"SET portcullis.reason = 'x'", "RESET portcullis.reason", "SHOW portcullis.reason", "SET portcullis.x = 1; SELECT 1", "SET PORTCULLIS.REASON TO DEFAULT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		s, ok, err := ParseSetting(sql)
		if ok && !MentionsSetting(sql) {
			t.Fatalf("%q parsed as a setting that MentionsSetting misses", sql)
		}
		if ok && err == nil && s.Name != SettingReason {
			t.Fatalf("%q accepted as setting %q", sql, s.Name)
		}
	})
}

func BenchmarkMentionsSetting(b *testing.B) {
	q := "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"
	for b.Loop() {
		if MentionsSetting(q) {
			b.Fatal("mentions")
		}
	}
}
