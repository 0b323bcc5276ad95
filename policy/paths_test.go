package policy

import (
	"strings"
	"testing"
)

func TestPathPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		match   []string
		not     []string
	}{
		{"/orders", []string{"/orders"}, []string{"/orders/", "/orders/1", "/order", "/"}},
		{"/orders/{id}/refund", []string{"/orders/2/refund", "/orders/abc/refund"}, []string{"/orders//refund", "/orders/2/refund/x", "/orders/refund"}},
		{"/orders/*", []string{"/orders/2"}, []string{"/orders", "/orders/", "/orders/2/refund"}},
		{"/v1/sys/**", []string{"/v1/sys", "/v1/sys/", "/v1/sys/policies/acl/x"}, []string{"/v1/system", "/v1/secret/sys"}},
		{"/**/refund", []string{"/refund", "/a/refund", "/a/b/refund"}, []string{"/a/refunds", "/refund/x"}},
		{"/**", []string{"/", "/anything/at/all"}, []string{}},
	} {
		p, err := compilePath(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tc.match {
			if !p.matches(m) {
				t.Errorf("%s does not match %s", tc.pattern, m)
			}
		}
		for _, m := range tc.not {
			if p.matches(m) {
				t.Errorf("%s matches %s", tc.pattern, m)
			}
		}
	}
	for _, bad := range []string{"orders", "/or*ders", "/{id", "/{}", "/{a{b}}"} {
		if _, err := compilePath(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestMethodsAndPathsDecide(t *testing.T) {
	set := &Set{Resources: []Resource{{Name: "admin", Kind: "http", DefaultEffect: "deny"}}, Policies: []Policy{
		{Name: "read", Match: Match{Resources: ResourceSelector{Names: []string{"admin"}}, Actions: []string{"read"}}, Effect: "allow"},
		{Name: "refunds", Match: Match{Resources: ResourceSelector{Names: []string{"admin"}}, Methods: []string{"POST"}, Paths: []string{"/orders/{id}/refund"}},
			Effect: "require_approval", Quorum: &QuorumSpec{RequiredUsers: []string{"bob"}}},
		{Name: "flags", Match: Match{Resources: ResourceSelector{Names: []string{"admin"}}, Paths: []string{"/flags/**"}}, Effect: "allow"},
	}}
	e, err := Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	var d Decision
	for _, tc := range []struct {
		class        Class
		method, path string
		want         Effect
	}{
		{ClassWrite, "POST", "/orders/2/refund", RequireApproval},
		{ClassWrite, "PUT", "/orders/2/refund", Deny}, // method does not fit: no policy, default deny
		{ClassWrite, "POST", "/orders/2", Deny},
		{ClassWrite, "PATCH", "/flags/checkout", Allow},
		{ClassRead, "GET", "/orders", Allow},
		{ClassWrite, "", "", Deny}, // a SQL write: paths never match it
	} {
		e.Evaluate(&Request{Subject: &Subject{User: "alice"}, Resource: "admin", Action: &Action{Class: tc.class, Method: tc.method, Path: tc.path, EstimatedRows: -1}}, &d)
		if d.Effect != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.method, tc.path, d.Effect, tc.want)
		}
	}
	bad := &Set{Resources: set.Resources, Policies: []Policy{{Name: "x", Match: Match{Methods: []string{"post"}, Paths: []string{"nope"}}, Effect: "deny"}}}
	if _, err := Compile(bad); err == nil || !strings.Contains(err.Error(), "upper case") || !strings.Contains(err.Error(), "must start with /") {
		t.Errorf("bad methods and paths: %v", err)
	}
}

// FuzzPathPattern: compiling and matching never panic, and a literal pattern matches
// exactly its own path.
func FuzzPathPattern(f *testing.F) {
	for _, s := range [][2]string{{"/orders/{id}/refund", "/orders/2/refund"}, {"/**/x", "/a/b/x"}, {"/a/*/**", "/a//b"}, {"/", "/"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := compilePath(pattern)
		if err != nil {
			return
		}
		p.matches(path)
		if !strings.ContainsAny(pattern, "*{}") && p.matches(path) != (pattern == path) {
			t.Fatalf("literal %q vs %q: %v", pattern, path, p.matches(path))
		}
	})
}
