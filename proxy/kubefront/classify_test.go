package kubefront

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		header         string
		want           policy.Class
		verb, kind     string
		sub, ns, name  string
	}{
		{"GET", "/api/v1/namespaces/prod/pods", "", policy.ClassRead, "list", "pods", "", "prod", ""},
		{"GET", "/api/v1/namespaces/prod/pods/orders-0", "", policy.ClassRead, "get", "pods", "", "prod", "orders-0"},
		{"GET", "/api/v1/namespaces/prod/pods?watch=true", "", policy.ClassRead, "watch", "pods", "", "prod", ""},
		{"GET", "/api/v1/namespaces/prod/pods/orders-0/log?follow=true", "", policy.ClassRead, "get", "pods", "log", "prod", "orders-0"},
		{"POST", "/apis/apps/v1/namespaces/prod/deployments", "", policy.ClassWrite, "create", "deployments", "", "prod", ""},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", policy.ClassRead, "create", "selfsubjectaccessreviews", "", "", ""},
		{"POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "", policy.ClassRead, "create", "selfsubjectreviews", "", "", ""},
		{"POST", "/apis/authentication.k8s.io/v1/tokenreviews", "", policy.ClassWrite, "create", "tokenreviews", "", "", ""},
		{"PATCH", "/apis/apps/v1/namespaces/prod/deployments/orders", "", policy.ClassWrite, "patch", "deployments", "", "prod", "orders"},
		{"PUT", "/apis/apps/v1/namespaces/prod/deployments/orders/scale", "", policy.ClassWrite, "update", "deployments", "scale", "prod", "orders"},
		{"DELETE", "/api/v1/namespaces/prod/configmaps/orders-config", "", policy.ClassDelete, "delete", "configmaps", "", "prod", "orders-config"},
		{"DELETE", "/api/v1/namespaces/prod/configmaps", "", policy.ClassDelete, "deletecollection", "configmaps", "", "prod", ""},
		{"POST", "/api/v1/namespaces/prod/pods/orders-0/eviction", "", policy.ClassDelete, "create", "pods", "eviction", "prod", "orders-0"},
		{"POST", "/api/v1/namespaces/prod/pods/orders-0/exec?command=sh&stdin=true", "", policy.ClassExec, "create", "pods", "exec", "prod", "orders-0"},
		{"GET", "/api/v1/namespaces/prod/pods/orders-0/exec?command=sh", "", policy.ClassExec, "get", "pods", "exec", "prod", "orders-0"},
		{"POST", "/api/v1/namespaces/prod/pods/orders-0/attach", "", policy.ClassExec, "create", "pods", "attach", "prod", "orders-0"},
		{"POST", "/api/v1/namespaces/prod/pods/orders-0/portforward", "", policy.ClassExec, "create", "pods", "portforward", "prod", "orders-0"},
		{"GET", "/api/v1/namespaces/prod/services/orders:80/proxy/admin", "", policy.ClassExec, "get", "services", "proxy", "prod", "orders:80"},
		{"PATCH", "/api/v1/namespaces/prod/pods/orders-0/ephemeralcontainers", "", policy.ClassExec, "patch", "pods", "ephemeralcontainers", "prod", "orders-0"},
		{"GET", "/api/v1/namespaces/prod/secrets/db", "", policy.ClassEscalation, "get", "secrets", "", "prod", "db"},
		{"GET", "/api/v1/secrets", "", policy.ClassEscalation, "list", "secrets", "", "", ""},
		{"POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "", policy.ClassEscalation, "create", "clusterrolebindings", "", "", ""},
		{"GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "", policy.ClassRead, "list", "clusterroles", "", "", ""},
		{"POST", "/api/v1/namespaces/prod/serviceaccounts/deployer/token", "", policy.ClassEscalation, "create", "serviceaccounts", "token", "prod", "deployer"},
		{"GET", "/api/v1/namespaces/prod/pods", "Impersonate-User: admin", policy.ClassEscalation, "list", "pods", "", "prod", ""},
		{"GET", "/api/v1/namespaces/prod/pods", "Impersonate-Extra-Scopes: x", policy.ClassEscalation, "list", "pods", "", "prod", ""},
		{"GET", "/version", "", policy.ClassRead, "get", "", "", "", ""},
		{"GET", "/apis", "", policy.ClassRead, "get", "", "", "", ""},
		{"POST", "/version", "", policy.ClassUnknown, "post", "", "", "", ""},
		{"POST", "/api/v1/namespaces/prod/pods/orders-0/frobnicate", "", policy.ClassUnknown, "create", "pods", "frobnicate", "prod", "orders-0"},
		{"OPTIONS", "/api/v1/namespaces/prod/pods", "", policy.ClassUnknown, "", "pods", "", "prod", ""},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if k, v, ok := strings.Cut(tc.header, ": "); ok {
			r.Header.Set(k, v)
		}
		a, class := Classify(r)
		if class != tc.want || a.Verb != tc.verb || a.Kind != tc.kind || a.Subresource != tc.sub || a.Namespace != tc.ns || a.Name != tc.name {
			t.Errorf("%s %s %s: %s %+v, want %s verb=%s resource=%s sub=%s ns=%s name=%s",
				tc.method, tc.target, tc.header, class, a, tc.want, tc.verb, tc.kind, tc.sub, tc.ns, tc.name)
		}
	}
}

// FuzzClassify: no request makes the classifier panic, and a request it cannot parse is
// never anything but unknown.
func FuzzClassify(f *testing.F) {
	f.Add("GET", "/api/v1/namespaces/prod/pods/orders-0/exec")
	f.Add("DELETE", "/apis/apps/v1/namespaces/prod/deployments")
	f.Add("GET", "/api/v1/namespaces//pods/..%2f")
	f.Fuzz(func(t *testing.T, method, target string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Method = method
		r.URL.Path = target
		a, class := Classify(r)
		if class == policy.ClassRead && a.Verb != "get" && a.Verb != "list" && a.Verb != "watch" && a.Verb != "head" {
			t.Fatalf("%s %q read with verb %q", method, target, a.Verb)
		}
	})
}
