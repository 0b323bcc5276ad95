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
		p, err := CompilePath(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tc.match {
			if !p.Match(m) {
				t.Errorf("%s does not match %s", tc.pattern, m)
			}
		}
		for _, m := range tc.not {
			if p.Match(m) {
				t.Errorf("%s matches %s", tc.pattern, m)
			}
		}
	}
	p, _ := CompilePath("/orders/{id}/items/{item}/**")
	if got, ok := p.Params("/orders/7/items/x/a/b"); !ok || got["id"] != "7" || got["item"] != "x" {
		t.Errorf("params: %v %v", got, ok)
	}
	for _, bad := range []string{"orders", "/or*ders", "/{id", "/{}", "/{a{b}}"} {
		if _, err := CompilePath(bad); err == nil {
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
		p, err := CompilePath(pattern)
		if err != nil {
			return
		}
		params, ok := p.Params(path)
		if ok != p.Match(path) {
			t.Fatalf("%q vs %q: Params says %v, Match %v", pattern, path, ok, p.Match(path))
		}
		for _, v := range params {
			if ok && (v == "" || strings.Contains(v, "/")) {
				t.Fatalf("%q vs %q: param %q is not one segment", pattern, path, v)
			}
		}
		if !strings.ContainsAny(pattern, "*{}") && p.Match(path) != (pattern == path) {
			t.Fatalf("literal %q vs %q: %v", pattern, path, p.Match(path))
		}
	})
}

// TestConditionsSeeTheHTTPRequest: a condition reads the request's path params (from the
// policy's own pattern), query, headers and JSON body; a body that is not JSON is null,
// and a condition that fails on it holds rather than allows.
func TestConditionsSeeTheHTTPRequest(t *testing.T) {
	admin := ResourceSelector{Names: []string{"admin"}}
	set := &Set{Resources: []Resource{{Name: "admin", Kind: "http", DefaultEffect: "allow"}}, Policies: []Policy{
		{Name: "big-refunds", Match: Match{Resources: admin, Methods: []string{"POST"}, Paths: []string{"/orders/{id}/refund"}},
			When:   `request.body.amount > 100 || request.params.id == "1" || request.query.exists(k, k == "force" && request.query[k] == "true") || ("x-reason" in request.headers && request.headers["x-reason"] == "test")`,
			Effect: "require_approval", Quorum: &QuorumSpec{RequiredUsers: []string{"bob"}}},
	}}
	e, err := Compile(set)
	if err != nil {
		t.Fatal(err)
	}
	var d Decision
	for _, tc := range []struct {
		name, path, query, ctype, body string
		header                         map[string][]string
		want                           Effect
	}{
		{"small refund", "/orders/2/refund", "", "application/json", `{"amount": 20}`, nil, Allow},
		{"big refund", "/orders/2/refund", "", "application/json", `{"amount": 500}`, nil, RequireApproval},
		{"order 1", "/orders/1/refund", "", "application/json", `{"amount": 20}`, nil, RequireApproval},
		{"forced", "/orders/2/refund", "force=true", "application/json", `{"amount": 20}`, nil, RequireApproval},
		{"header", "/orders/2/refund", "", "application/json", `{"amount": 20}`, map[string][]string{"X-Reason": {"test"}}, RequireApproval},
		{"not JSON", "/orders/2/refund", "", "text/plain", `{"amount": 20}`, nil, RequireApproval}, // body null: the condition errs, and holds
	} {
		act := &Action{Class: ClassWrite, Method: "POST", Path: tc.path, EstimatedRows: -1,
			HTTP: &HTTPRequest{RawQuery: tc.query, Header: tc.header, ContentType: tc.ctype, Body: []byte(tc.body)}}
		e.Evaluate(&Request{Subject: &Subject{User: "alice"}, Resource: "admin", Action: act}, &d)
		if d.Effect != tc.want {
			t.Errorf("%s: %s, want %s (%v)", tc.name, d.Effect, tc.want, d.Err)
		}
	}
}
