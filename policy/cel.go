package policy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
)

// celCostLimit bounds the work one condition may do per evaluation, so that a policy
// cannot turn the request path into a denial of service.
const celCostLimit = 100_000

// celAction is the view of an Action that CEL conditions see: the class by name.
type celAction struct {
	Class          string   `cel:"class"`
	Kind           string   `cel:"kind"`
	Statement      string   `cel:"statement"`
	Tables         []string `cel:"tables"`
	Schemas        []string `cel:"schemas"`
	Functions      []string `cel:"functions"`
	EstimatedRows  int64    `cel:"estimated_rows"`
	MultiStatement bool     `cel:"multi_statement"`
	InTransaction  bool     `cel:"in_transaction"`
	Method         string   `cel:"method"`
	Path           string   `cel:"path"`
	Namespace      string   `cel:"namespace"`
}

var (
	celEnvOnce sync.Once
	celEnv     *cel.Env
	celEnvErr  error
)

// newCELEnv returns the shared environment conditions are checked in. The variables are
// subject, resource, action, now and request; the string, list and set extensions are available.
func newCELEnv() (*cel.Env, error) {
	celEnvOnce.Do(func() {
		celEnv, celEnvErr = cel.NewEnv(
			ext.NativeTypes(reflect.TypeFor[Subject](), reflect.TypeFor[Resource](), reflect.TypeFor[celAction](), ext.ParseStructTags(true)),
			cel.Variable("subject", cel.ObjectType("policy.Subject")),
			cel.Variable("resource", cel.ObjectType("policy.Resource")),
			cel.Variable("action", cel.ObjectType("policy.celAction")),
			cel.Variable("now", cel.TimestampType),
			cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
			ext.Strings(),
			ext.Lists(),
			ext.Sets(),
		)
	})
	return celEnv, celEnvErr
}

// condition is a compiled `when` expression.
type condition struct {
	prg cel.Program
	// usesEstimate is set when the expression reads action.estimated_rows, so front ends
	// know to ask the upstream for an estimate before deciding.
	usesEstimate bool
}

func compileCondition(expr string) (*condition, error) {
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("could not build the CEL environment: %w", err)
	}
	checked, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !checked.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("condition must be a bool expression, not %s", checked.OutputType())
	}
	prg, err := env.Program(checked, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	c := &condition{prg: prg}
	ast.PreOrderVisit(checked.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.SelectKind && e.AsSelect().FieldName() == "estimated_rows" {
			if op := e.AsSelect().Operand(); op.Kind() == ast.IdentKind && op.AsIdent() == "action" {
				c.usesEstimate = true
			}
		}
	}))
	return c, nil
}

// celActivation resolves the variables of a condition for one request.
type celActivation struct {
	subject  *Subject
	resource *Resource
	action   celAction
	now      time.Time
	act      *Action
	params   map[string]string
}

func (a *celActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "subject":
		if a.subject == nil {
			return &Subject{}, true
		}
		return a.subject, true
	case "resource":
		return a.resource, true
	case "action":
		return &a.action, true
	case "now":
		return a.now, true
	case "request":
		return a.request(), true
	}
	return nil, false
}

// request is the HTTP request as conditions see it: method, path, params (the {name}
// segments of the policy's own path pattern), query and headers (first value of each;
// header names in lower case), body (parsed JSON, or null: for Kubernetes, the object
// sent), and kube (a Kubernetes request's verb, group, version, resource, subresource,
// name and namespace; empty strings for other requests). Built only when a
// condition reads it; for other front ends its maps are empty and body is null.
func (a *celActivation) request() map[string]any {
	m := map[string]any{"method": a.act.Method, "path": a.act.Path, "params": map[string]string{},
		"query": map[string]string{}, "headers": map[string]string{}, "body": nil}
	if a.params != nil {
		m["params"] = a.params
	}
	kube := map[string]string{"verb": "", "group": "", "version": "", "resource": "", "subresource": "", "name": "", "namespace": a.act.Namespace}
	if k := a.act.Kube; k != nil {
		kube["verb"], kube["group"], kube["version"], kube["resource"], kube["subresource"], kube["name"] = k.Verb, k.Group, k.Version, k.Resource, k.Subresource, k.Name
	}
	m["kube"] = kube
	h := a.act.HTTP
	if h == nil {
		return m
	}
	values, _ := url.ParseQuery(h.RawQuery) // what parses, even if some pairs do not
	q := make(map[string]string, len(values))
	for k, v := range values {
		if len(v) > 0 {
			q[k] = v[0]
		}
	}
	hd := make(map[string]string, len(h.Header))
	for k, v := range h.Header {
		switch k = strings.ToLower(k); {
		case len(v) == 0, k == "authorization", k == "proxy-authorization", k == "cookie":
			// The caller's credentials are never a condition's to read.
		default:
			hd[k] = v[0]
		}
	}
	m["query"], m["headers"] = q, hd
	if len(h.Body) > 0 && len(h.Body) <= MaxCELBody && isJSON(h.ContentType) {
		var body any
		if json.Unmarshal(h.Body, &body) == nil {
			m["body"] = body
		}
	}
	return m
}

// isJSON reports whether a media type is JSON (application/json, or any +json).
func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

func (a *celActivation) Parent() cel.Activation { return nil }

// eval reports whether the condition holds for the request.
func (c *condition) eval(req *Request, res *Resource, params map[string]string) (bool, error) {
	act := req.Action
	a := &celActivation{subject: req.Subject, resource: res, now: req.Time, act: act, params: params}
	a.action = celAction{
		Class: act.Class.String(), Kind: act.Kind, Statement: act.Statement, Tables: act.Tables,
		Schemas: act.Schemas, Functions: act.Functions, EstimatedRows: act.EstimatedRows,
		MultiStatement: act.MultiStatement, InTransaction: act.InTransaction,
		Method: act.Method, Path: act.Path, Namespace: act.Namespace,
	}
	out, _, err := c.prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("condition returned %s, not bool", out.Type())
	}
	return b, nil
}
