// Package kubefront is the Kubernetes front end: kubectl and client-go tools reach API
// servers through it, and each API request is decided by the shared gate. This file holds
// its classification; the front end itself is being built (issue 13).
package kubefront

import (
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/portcullis/portcullis/policy"
)

// requestInfo parses requests the way kube-apiserver does (its default API prefixes), so
// Portcullis and the server agree on what a path names.
var requestInfo = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// Attributes is what one Kubernetes API request does, as the API server sees it.
type Attributes struct {
	// Resource is false for non-resource paths (/version, /healthz, /openapi/v2, ...).
	Resource bool
	// Verb is the API verb: get, list, watch, create, update, patch, delete,
	// deletecollection, or the HTTP method in lower case for non-resource paths.
	Verb                  string
	Group, Version        string
	Kind, Subresource     string // Kind is the resource (pods, deployments, ...)
	Namespace, Name, Path string
}

// Classify returns the request's attributes and its class. Anything the API server's
// parser rejects, and any verb or subresource this front end does not know to be harmless,
// is ClassUnknown: decided as the most dangerous, never forwarded unchecked.
func Classify(r *http.Request) (Attributes, policy.Class) {
	info, err := requestInfo.NewRequestInfo(r)
	if err != nil {
		return Attributes{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}, policy.ClassUnknown
	}
	a := Attributes{Resource: info.IsResourceRequest, Verb: info.Verb, Group: info.APIGroup, Version: info.APIVersion,
		Kind: info.Resource, Subresource: info.Subresource, Namespace: info.Namespace, Name: info.Name, Path: info.Path}
	if a.Verb == "get" && isUpgrade(r) {
		// A stream opened as a WebSocket (GET) is the same create of pods/exec, attach or
		// portforward as over SPDY (POST), and the API server authorizes it so.
		a.Verb = "create"
	}
	if r.Header.Get("Impersonate-User") != "" || r.Header.Get("Impersonate-Group") != "" || r.Header.Get("Impersonate-Uid") != "" ||
		hasPrefixHeader(r.Header, "Impersonate-Extra-") {
		// Acting as someone else is an escalation whatever the request does.
		return a, policy.ClassEscalation
	}
	if !a.Resource {
		if a.Verb == "get" || a.Verb == "head" {
			return a, policy.ClassRead // discovery, version, health, OpenAPI
		}
		return a, policy.ClassUnknown
	}
	return a, resourceClass(a)
}

// resourceClass is the class of a resource request.
func resourceClass(a Attributes) policy.Class {
	switch {
	case a.Verb == "impersonate":
		return policy.ClassEscalation
	case a.Group == "rbac.authorization.k8s.io" && a.Verb != "get" && a.Verb != "list" && a.Verb != "watch":
		// Writes to roles and bindings (and the bind and escalate verbs) change who may do what.
		return policy.ClassEscalation
	case a.Group == "" && a.Kind == "secrets" && a.Subresource == "":
		// Reading a Secret hands out a credential; writing one plants one.
		return policy.ClassEscalation
	case a.Group == "" && a.Kind == "serviceaccounts" && a.Subresource == "token":
		return policy.ClassEscalation // TokenRequest mints a credential
	case a.Group == "certificates.k8s.io" && a.Kind == "certificatesigningrequests" && (a.Subresource == "approval" || a.Verb == "approve"):
		return policy.ClassEscalation
	}
	if a.Verb == "create" && a.Subresource == "" && reviews[a.Group+"/"+a.Kind] {
		// kubectl auth can-i and auth whoami: a question answered, nothing stored.
		return policy.ClassRead
	}
	switch a.Subresource {
	case "exec", "attach", "portforward", "proxy":
		// A stream into a container, or traffic to whatever a pod, service or node serves.
		return policy.ClassExec
	case "", "status", "scale", "log", "ephemeralcontainers", "resize", "binding", "eviction":
		// The object itself or a subresource whose verbs mean what they say on it.
	default:
		return policy.ClassUnknown
	}
	switch a.Verb {
	case "get", "list", "watch":
		return policy.ClassRead
	case "create", "update", "patch":
		switch a.Subresource {
		case "ephemeralcontainers":
			return policy.ClassExec // a debug container is a way into the pod
		case "eviction":
			return policy.ClassDelete // an eviction deletes the pod
		}
		return policy.ClassWrite
	case "delete", "deletecollection":
		return policy.ClassDelete
	}
	return policy.ClassUnknown
}

func hasPrefixHeader(h http.Header, prefix string) bool {
	for k := range h {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// reviews are the APIs whose create asks a question and stores nothing.
var reviews = map[string]bool{
	"authentication.k8s.io/selfsubjectreviews":       true,
	"authorization.k8s.io/selfsubjectaccessreviews":  true,
	"authorization.k8s.io/selfsubjectrulesreviews":   true,
	"authorization.k8s.io/subjectaccessreviews":      true,
	"authorization.k8s.io/localsubjectaccessreviews": true,
}
