package pgsql

import (
	"strings"
	"testing"
)

func TestHighlight(t *testing.T) {
	for _, sql := range []string{
		"UPDATE orders SET status = 'shipped' WHERE id = $1 -- why\n",
		"select 1.5, /* c */ \"Odd\"\"Name\" from t",
		"SELECT 'unterminated",
		"",
		"DELETE FROM x; DROP TABLE y",
	} {
		spans := Highlight(sql)
		var b strings.Builder
		for _, s := range spans {
			b.WriteString(s.Text)
		}
		if b.String() != sql {
			t.Errorf("spans of %q put together = %q", sql, b.String())
		}
	}
	kinds := map[string]string{}
	for _, s := range Highlight("UPDATE orders SET status = 'shipped' WHERE id = $1 AND n > 2.5 -- why") {
		kinds[s.Text] = s.Kind
	}
	want := map[string]string{"UPDATE": "keyword", "SET": "keyword", "WHERE": "keyword", "orders": "ident", "'shipped'": "string",
		"$1": "param", "2.5": "number", "-- why": "comment", "=": ""}
	for text, kind := range want {
		if kinds[text] != kind {
			t.Errorf("%q is %q, want %q", text, kinds[text], kind)
		}
	}
}
