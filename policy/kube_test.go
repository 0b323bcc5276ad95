package policy

import (
	"testing"
	"time"
)

func TestKubeMatch(t *testing.T) {
	set := &Set{
		Resources: []Resource{{Name: "cluster", Kind: "kubernetes", DefaultEffect: "deny"}, {Name: "orders", Kind: "postgres"}},
		Teams:     []string{"sre"},
		Policies: []Policy{
			{Name: "reads", Match: Match{Resources: ResourceSelector{Names: []string{"cluster"}}, Actions: []string{"read"}}, Effect: "allow"},
			{Name: "demo-free", Match: Match{Resources: ResourceSelector{Names: []string{"cluster"}}, Kubernetes: &KubeMatch{Namespaces: []string{"demo", "sandbox-*"}}}, Effect: "allow"},
			{Name: "system-writes", Match: Match{Resources: ResourceSelector{Names: []string{"cluster"}}, Actions: []string{"write", "delete"},
				Kubernetes: &KubeMatch{Namespaces: []string{"kube-*"}}}, Effect: "deny"},
			{Name: "prod-changes", Match: Match{Resources: ResourceSelector{Names: []string{"cluster"}}, Actions: []string{"write", "delete", "exec"},
				Kubernetes: &KubeMatch{Namespaces: []string{"prod"}}}, Effect: "require_approval", Quorum: &QuorumSpec{RequiredTeams: []string{"sre"}}},
			{Name: "scale-orders", Match: Match{Resources: ResourceSelector{Names: []string{"cluster"}}, Actions: []string{"write"},
				Kubernetes: &KubeMatch{Namespaces: []string{"prod"}, Resources: []string{"deployments.apps/scale"}, Names: []string{"orders"}, Verbs: []string{"patch", "update"}}},
				When: "request.kube.name == 'orders' && request.body.spec.replicas <= 5", Effect: "allow"},
			{Name: "exec-anywhere", Match: Match{Resources: ResourceSelector{Names: []string{"cluster"}}, Kubernetes: &KubeMatch{Resources: []string{"pods/exec"}}},
				When: "request.kube.namespace == 'staging'", Effect: "allow"},
		},
	}
	e := mustCompile(t, set)
	kube := func(c Class, ns, verb, group, res, sub, name string) *Action {
		return &Action{Class: c, Namespace: ns, EstimatedRows: -1, Kube: &KubeRequest{Verb: verb, Group: group, Resource: res, Subresource: sub, Name: name}}
	}
	scale := func(replicas string) *Action {
		a := kube(ClassWrite, "prod", "patch", "apps", "deployments", "scale", "orders")
		a.HTTP = &HTTPRequest{ContentType: "application/merge-patch+json", Body: []byte(`{"spec":{"replicas":` + replicas + `}}`)}
		return a
	}
	tests := []struct {
		name string
		act  *Action
		want Effect
	}{
		{"read anywhere", kube(ClassRead, "prod", "get", "", "configmaps", "", "orders-config"), Allow},
		{"demo is free", kube(ClassDelete, "demo", "delete", "", "pods", "", "x"), Allow},
		{"namespace glob", kube(ClassWrite, "sandbox-7", "create", "", "configmaps", "", ""), Allow},
		{"kube-system write denied", kube(ClassWrite, "kube-system", "patch", "", "configmaps", "", "coredns"), Deny},
		{"prod delete held", kube(ClassDelete, "prod", "delete", "", "configmaps", "", "orders-config"), RequireApproval},
		{"prod scale within limit", scale("3"), RequireApproval},
		{"exec in staging", kube(ClassExec, "staging", "create", "", "pods", "exec", "web-0"), Allow},
		{"attach is not exec's rule", kube(ClassExec, "staging", "create", "", "pods", "attach", "web-0"), Deny},
		{"not a kube request", &Action{Class: ClassWrite, EstimatedRows: -1}, Deny},
	}
	noon := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		var d Decision
		e.Evaluate(&Request{Subject: alice, Resource: "cluster", Action: tc.act, Time: noon}, &d)
		if d.Effect != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, d.Effect, d.Reason(), tc.want)
		}
	}
	// The scale rule allows, but the approval policy on prod writes still matches: any
	// require_approval wins over allow, so a narrower allow never loosens a hold.
	var d Decision
	e.Evaluate(&Request{Subject: alice, Resource: "cluster", Action: scale("3"), Time: noon}, &d)
	if names := d.RuleNames(); len(names) != 2 {
		t.Errorf("scale matched %v, want prod-changes and scale-orders", names)
	}
	e.Evaluate(&Request{Subject: alice, Resource: "cluster", Action: scale("9"), Time: noon}, &d)
	if names := d.RuleNames(); len(names) != 1 {
		t.Errorf("scale to 9 matched %v, want prod-changes only (the condition is false)", names)
	}

	bad := &Set{Resources: set.Resources, Policies: []Policy{{Name: "b", Match: Match{Kubernetes: &KubeMatch{Namespaces: []string{"[x"}, Resources: []string{"/exec"}}}, Effect: "allow"}}}
	if _, err := Compile(bad); err == nil {
		t.Error("bad kubernetes patterns compiled")
	}
}
