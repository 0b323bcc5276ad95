package pgwire

import "testing"

func TestStartupReason(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"portcullis.reason": "restore backup, INC-7"}, "restore backup, INC-7"},
		{map[string]string{"options": `-c portcullis.reason=restore\ backup,\ INC-7`}, "restore backup, INC-7"},
		{map[string]string{"options": `-cportcullis.reason=x --work_mem=4MB`}, "x"},
		{map[string]string{"options": `--portcullis.reason=a\\b`}, `a\b`},
		{map[string]string{"options": `-c work_mem=4MB -c Portcullis.Reason=y`}, "y"},
		{map[string]string{"options": `-c`}, ""},
		{map[string]string{"options": `-c role=admin`}, ""},
		{map[string]string{}, ""},
	} {
		if got := startupReason(tc.params); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.params, got, tc.want)
		}
	}
}
