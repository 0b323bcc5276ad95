package configs

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes the loader panic, and that what it accepts is
// compiled.
func FuzzParse(f *testing.F) {
	demo, _ := os.ReadFile("demo.yaml")
	f.Add(string(demo))
	f.Add(minimal)
	f.Add("version: 1\npolicies:\n  - name: p\n    effect: deny\n    when: 'action.tables.size() > 1'\n")
	f.Add("version: 1\nresources: {a: 1}\n")
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := Parse("fuzz.yaml", []byte(data), AllowUnsetEnv())
		if err == nil && cfg.Engine == nil {
			t.Fatal("accepted a configuration without compiling it")
		}
	})
}
