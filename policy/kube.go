package policy

import (
	"fmt"
	"path"
	"strings"
)

// KubeRequest is what a Kubernetes API request names, parsed the way the API server does;
// the namespace is Action.Namespace.
type KubeRequest struct {
	// Verb is get, list, watch, create, update, patch, delete or deletecollection (or the
	// method in lower case for a path that names no resource, such as /version).
	Verb        string `json:"verb"`
	Group       string `json:"group,omitempty"`
	Version     string `json:"version,omitempty"`
	Resource    string `json:"resource,omitempty"` // pods, deployments, ...
	Subresource string `json:"subresource,omitempty"`
	Name        string `json:"name,omitempty"`
}

// KubeMatch narrows a policy to Kubernetes requests (resources of kind kubernetes). Each
// list matches if it is empty or any entry matches; entries are patterns in which * stands
// for any run of characters. A policy with it never matches a request that is not a
// Kubernetes API request.
type KubeMatch struct {
	// Namespaces of the request ("" is a cluster-scoped one).
	Namespaces []string `yaml:"namespaces" json:"namespaces,omitempty"`
	// Resources as kubectl spells them: resource[.group][/subresource], such as
	// configmaps, deployments.apps, pods/exec or pods/*. Without a group any group
	// matches; without a subresource only the object itself does.
	Resources []string `yaml:"resources" json:"resources,omitempty"`
	// Names of the objects (a create or list names none: it matches only *).
	Names []string `yaml:"names" json:"names,omitempty"`
	// Verbs, such as delete or patch.
	Verbs []string `yaml:"verbs" json:"verbs,omitempty"`
}

// kubeResource is a compiled KubeMatch.Resources entry.
type kubeResource struct {
	resource, group, subresource string
	anyGroup                     bool
}

// compileKube checks a KubeMatch's patterns; fail is called for each bad entry.
func compileKube(m *KubeMatch, fail func(err error, path ...any)) []kubeResource {
	for field, list := range map[string][]string{"namespaces": m.Namespaces, "names": m.Names, "verbs": m.Verbs} {
		for i, p := range list {
			if _, err := path.Match(p, ""); err != nil {
				fail(fmt.Errorf("%q: %w", p, err), "match", "kubernetes", field, i)
			}
		}
	}
	var out []kubeResource
	for i, e := range m.Resources {
		rest, sub, _ := strings.Cut(e, "/")
		res, group, hasGroup := strings.Cut(rest, ".")
		kr := kubeResource{resource: res, group: group, subresource: sub, anyGroup: !hasGroup}
		for _, p := range []string{res, group, sub} {
			if _, err := path.Match(p, ""); err != nil {
				fail(fmt.Errorf("%q: %w", e, err), "match", "kubernetes", "resources", i)
			}
		}
		if res == "" {
			fail(fmt.Errorf("%q: want resource[.group][/subresource], such as deployments.apps or pods/exec", e), "match", "kubernetes", "resources", i)
		}
		out = append(out, kr)
	}
	return out
}

// matchesKube reports whether a Kubernetes request fits the rule's kubernetes match.
func (r *Rule) matchesKube(act *Action) bool {
	k := r.kube
	if k == nil {
		return true
	}
	kr := act.Kube
	if kr == nil {
		return false
	}
	if !globAny(k.Namespaces, act.Namespace) || !globAny(k.Names, kr.Name) || !globAny(k.Verbs, kr.Verb) {
		return false
	}
	if len(r.kubeResources) == 0 {
		return true
	}
	for _, p := range r.kubeResources {
		if glob(p.resource, kr.Resource) && (p.anyGroup || glob(p.group, kr.Group)) && glob(p.subresource, kr.Subresource) {
			return true
		}
	}
	return false
}

// globAny: an empty list matches anything; otherwise any pattern that matches s.
func globAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func glob(pattern, s string) bool {
	if pattern == s || pattern == "*" {
		return true
	}
	ok, _ := path.Match(pattern, s)
	return ok
}
