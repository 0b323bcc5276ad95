package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Set is everything Compile needs: the policy documents, the resources they may select,
// what happens when none matches, and the names that references must resolve to.
type Set struct {
	Policies  []Policy
	Resources []Resource
	Defaults  Defaults
	// Teams and Roles are the configured team and role names. When non-nil, a policy that
	// names a team or role outside them is an error.
	Teams, Roles []string
}

// FieldError is an error in one field of one policy. Path leads from the policy document to
// the offending value (for example "match", "principals", "teams", 1) so that a loader can
// point at the line.
type FieldError struct {
	Index  int // position of the policy in Set.Policies
	Policy string
	Path   []any
	Err    error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %q", e.Policy)
	if len(e.Path) > 0 {
		b.WriteString(": ")
		for i, p := range e.Path {
			switch p := p.(type) {
			case int:
				fmt.Fprintf(&b, "[%d]", p)
			default:
				if i > 0 {
					b.WriteByte('.')
				}
				fmt.Fprint(&b, p)
			}
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Rule is a compiled policy.
type Rule struct {
	Name        string
	Description string
	Tier        Tier
	Effect      Effect
	// Quorum is set for require_approval rules.
	Quorum *Quorum

	classes       classSet
	methods       []string      // upper case; empty: any
	paths         []PathPattern // empty: any
	kube          *KubeMatch    // nil: any request
	kubeResources []kubeResource
	principals    Principals
	anyone        bool
	except        Principals
	when          *condition
	schedule      *window
	reason        string
	names         []string // {Name}: the rule names of a decision it alone matched; read-only
}

// UsesEstimate reports whether the rule's condition reads action.estimated_rows.
func (r *Rule) UsesEstimate() bool { return r.when != nil && r.when.usesEstimate }

// compiledResource is a resource with the rules that can apply to it, per action class,
// in policy order.
type compiledResource struct {
	Resource
	byClass       [numClasses][]*Rule
	defaultEffect Effect
	defaultReason string
	usesEstimate  [numClasses]bool
}

// Engine decides requests against a compiled policy set. It is immutable and safe for
// concurrent use; a configuration reload builds a new Engine.
type Engine struct {
	// cur is the compiled set in force; Replace swaps it whole, so that a decision never
	// sees half of one set and half of another.
	cur atomic.Pointer[compiled]
}

// compiled is one compiled policy set; it does not change once built.
type compiled struct {
	rules     []*Rule
	resources map[string]*compiledResource
	snapshot  string
}

// Replace puts the policy set of next in force in e, for every decision from now on
// (decisions under way finish with the set they started with). next is not changed and
// may be dropped.
func (e *Engine) Replace(next *Engine) { e.cur.Store(next.cur.Load()) }

// Compile validates every policy of the set and builds an Engine. It returns all errors
// found, joined; each policy error is a *FieldError.
func Compile(set *Set) (*Engine, error) {
	var errs []error
	e := &compiled{resources: make(map[string]*compiledResource, len(set.Resources))}

	defEffect, err := parseDefault(set.Defaults.Effect, Allow)
	if err != nil {
		errs = append(errs, fmt.Errorf("defaults.effect: %w", err))
	}
	prodEffect, err := parseDefault(set.Defaults.ProductionEffect, Deny)
	if err != nil {
		errs = append(errs, fmt.Errorf("defaults.production_effect: %w", err))
	}
	for _, r := range set.Resources {
		if _, dup := e.resources[r.Name]; dup {
			errs = append(errs, fmt.Errorf("resource %q is defined twice", r.Name))
			continue
		}
		cr := &compiledResource{Resource: r, defaultEffect: defEffect}
		if r.IsProduction() {
			cr.defaultEffect = prodEffect
		}
		if r.DefaultEffect != "" {
			if cr.defaultEffect, err = parseDefault(r.DefaultEffect, Deny); err != nil {
				errs = append(errs, fmt.Errorf("resource %q: default_effect: %w", r.Name, err))
			}
		}
		cr.defaultReason = fmt.Sprintf("no policy matched; the default for resource %s is %s", r.Name, cr.defaultEffect)
		e.resources[r.Name] = cr
	}

	seen := map[string]int{}
	for i := range set.Policies {
		p := &set.Policies[i]
		if j, dup := seen[p.Name]; dup && p.Name != "" {
			errs = append(errs, &FieldError{Index: i, Policy: p.Name, Path: []any{"name"}, Err: fmt.Errorf("duplicate policy name (also policy #%d)", j+1)})
			continue
		}
		seen[p.Name] = i
		r, perrs := compilePolicy(set, p)
		for _, err := range perrs {
			err.Index, err.Policy = i, p.Name
			errs = append(errs, err)
		}
		if r == nil {
			continue
		}
		e.rules = append(e.rules, r)
		for _, cr := range e.resources {
			if !selects(&p.Match.Resources, &cr.Resource) {
				continue
			}
			for c := range numClasses {
				// A request nobody could classify is treated as the most dangerous
				// class: every deny and approval rule applies to it, and an allow rule
				// only if it names unknown (or matches every class).
				if r.classes.has(c) || (c == ClassUnknown && r.Effect != Allow) {
					cr.byClass[c] = append(cr.byClass[c], r)
					cr.usesEstimate[c] = cr.usesEstimate[c] || r.UsesEstimate()
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	e.snapshot = snapshotHash(set)
	eng := new(Engine)
	eng.cur.Store(e)
	return eng, nil
}

func parseDefault(s string, def Effect) (Effect, error) {
	if s == "" {
		return def, nil
	}
	e, err := ParseEffect(s)
	if err != nil || e == RequireApproval {
		return def, fmt.Errorf("must be allow or deny, not %q", s)
	}
	return e, nil
}

func compilePolicy(set *Set, p *Policy) (*Rule, []*FieldError) {
	var errs []*FieldError
	fail := func(err error, path ...any) { errs = append(errs, &FieldError{Path: path, Err: err}) }

	r := &Rule{Name: p.Name, Description: p.Description, principals: p.Match.Principals, anyone: p.Match.Principals.empty(), except: p.Match.Except}
	if p.Name == "" {
		fail(errors.New("name is required"), "name")
	}
	var err error
	if p.Effect == "" {
		fail(errors.New("effect is required (allow, deny or require_approval)"), "effect")
	} else if r.Effect, err = ParseEffect(p.Effect); err != nil {
		fail(err, "effect")
	}
	r.Tier = TierMedium
	if p.Tier != "" {
		if r.Tier, err = ParseTier(p.Tier); err != nil {
			fail(err, "tier")
		}
	}

	if len(p.Match.Actions) == 0 {
		r.classes = allClasses
	}
	for i, a := range p.Match.Actions {
		c, err := ParseClass(a)
		if err != nil {
			fail(err, "match", "actions", i)
		}
		r.classes |= 1 << c
	}
	for i, m := range p.Match.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " /") {
			fail(fmt.Errorf("method %q: want an HTTP method in upper case, such as POST", m), "match", "methods", i)
		}
		r.methods = append(r.methods, m)
	}
	for i, pat := range p.Match.Paths {
		pp, err := CompilePath(pat)
		if err != nil {
			fail(err, "match", "paths", i)
		}
		r.paths = append(r.paths, pp)
	}
	if k := p.Match.Kubernetes; k != nil {
		r.kube, r.kubeResources = k, compileKube(k, fail)
	}
	for i, n := range p.Match.Resources.Names {
		if !slices.ContainsFunc(set.Resources, func(r Resource) bool { return r.Name == n }) {
			fail(fmt.Errorf("unknown resource %q", n), "match", "resources", "names", i)
		}
	}
	for i, k := range p.Match.Resources.Kinds {
		if !slices.Contains(ResourceKinds, k) {
			fail(fmt.Errorf("unknown resource kind %q (want one of %s)", k, strings.Join(ResourceKinds, ", ")), "match", "resources", "kinds", i)
		}
	}
	checkNames := func(known, names []string, what string, path ...any) {
		if known == nil {
			return
		}
		for i, n := range names {
			if !slices.Contains(known, n) {
				fail(fmt.Errorf("unknown %s %q", what, n), append(slices.Clone(path), i)...)
			}
		}
	}
	checkNames(set.Teams, p.Match.Principals.Teams, "team", "match", "principals", "teams")
	checkNames(set.Roles, p.Match.Principals.Roles, "role", "match", "principals", "roles")
	checkNames(set.Teams, p.Match.Except.Teams, "team", "match", "except", "teams")
	checkNames(set.Roles, p.Match.Except.Roles, "role", "match", "except", "roles")

	if p.When != "" {
		if r.when, err = compileCondition(p.When); err != nil {
			fail(err, "when")
		}
	}
	if p.Schedule != nil {
		if r.schedule, err = compileSchedule(p.Schedule); err != nil {
			fail(err, "schedule")
		}
	}

	switch {
	case r.Effect == RequireApproval && p.Quorum == nil:
		fail(errors.New("a require_approval policy needs a quorum"), "quorum")
	case r.Effect != RequireApproval && p.Quorum != nil && p.Effect != "":
		fail(fmt.Errorf("quorum is only valid with effect require_approval, not %s", r.Effect), "quorum")
	case p.Quorum != nil:
		if r.Quorum, err = CompileQuorum(p.Quorum); err != nil {
			fail(err, "quorum")
		}
		q := p.Quorum
		checkNames(set.Teams, q.RequiredTeams, "team", "quorum", "required_teams")
		checkNames(set.Roles, q.RequiredRoles, "role", "quorum", "required_roles")
		checkNames(set.Teams, q.Approvers.Teams, "team", "quorum", "approvers", "teams")
		checkNames(set.Roles, q.Approvers.Roles, "role", "quorum", "approvers", "roles")
	}

	switch r.Effect {
	case Allow:
		r.reason = "allowed by policy " + p.Name
	case Deny:
		r.reason = "denied by policy " + p.Name
	case RequireApproval:
		r.reason = "approval required by policy " + p.Name
	}
	if p.Description != "" {
		r.reason += ": " + p.Description
	}
	r.names = []string{r.Name}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// ResourceKinds are the kinds of resource Portcullis fronts.
var ResourceKinds = []string{"postgres", "http", "kubernetes"}

func selects(s *ResourceSelector, r *Resource) bool {
	if len(s.Names) > 0 && !slices.Contains(s.Names, r.Name) {
		return false
	}
	if len(s.Kinds) > 0 && !slices.Contains(s.Kinds, r.Kind) {
		return false
	}
	for k, v := range s.Labels {
		got, ok := r.Labels[k]
		if !ok || (v != "*" && v != got) {
			return false
		}
	}
	return true
}

// Snapshot returns the policy snapshot hash: a stable SHA-256 (hex) of the policy set,
// the resources it selects and the defaults. It changes when any of them changes in
// meaning, and not when only their order or formatting does.
func (e *Engine) Snapshot() string { return e.cur.Load().snapshot }

// Rules returns the compiled rules in policy order.
func (e *Engine) Rules() []*Rule { return e.cur.Load().rules }

// Resource returns the resource named name, or nil.
func (e *Engine) Resource(name string) *Resource {
	if cr := e.cur.Load().resources[name]; cr != nil {
		return &cr.Resource
	}
	return nil
}

// NeedsEstimate reports whether any rule that could apply to class on resource reads the
// estimated row count, so the front end should estimate before deciding.
func (e *Engine) NeedsEstimate(resource string, class Class) bool {
	cr := e.cur.Load().resources[resource]
	return cr != nil && class < numClasses && cr.usesEstimate[class]
}
