package policy

import "fmt"

// Evaluate decides req and writes the outcome into d, reusing d's storage. Every policy that
// matches applies: any deny wins, then the combined quorum of all approval policies, then
// allow; when none matches, the resource's default applies. An unknown resource or a nil
// action is denied. Evaluate does not allocate when the request is allowed by policies
// without conditions.
func (e *Engine) Evaluate(req *Request, d *Decision) {
	c := e.cur.Load() // one set for the whole decision
	d.reset(c.snapshot)
	cr := c.resources[req.Resource]
	switch {
	case cr == nil:
		d.Effect, d.reason = Deny, "unknown resource "+req.Resource
		return
	case req.Action == nil:
		d.Effect, d.reason = Deny, "no action to decide"
		return
	}
	class := req.Action.Class
	if class >= numClasses {
		class = ClassUnknown
	}
	var hasDeny, hasApproval, hasAllow bool
	for _, r := range cr.byClass[class] {
		if !r.anyone && !r.principals.matchesAny(req.Subject) || r.except.matchesAny(req.Subject) {
			continue
		}
		if r.schedule != nil && !r.schedule.contains(req.Time) {
			continue
		}
		if len(r.methods) > 0 && !contains(r.methods, req.Action.Method) || len(r.paths) > 0 && !r.matchesPath(req.Action.Path) || !r.matchesKube(req.Action) {
			continue
		}
		if r.when != nil {
			ok, err := r.when.eval(req, &cr.Resource, r.params(req.Action.Path))
			if err != nil {
				if d.Err == nil {
					d.Err = fmt.Errorf("condition of policy %s: %w", r.Name, err)
				}
				ok = r.Effect != Allow
			}
			if !ok {
				continue
			}
		}
		d.Matched = append(d.Matched, r)
		switch r.Effect {
		case Deny:
			hasDeny = true
		case RequireApproval:
			hasApproval = true
		case Allow:
			hasAllow = true
		}
	}
	switch {
	case hasDeny:
		d.Effect = Deny
	case hasApproval:
		d.Effect = RequireApproval
		first := ""
		for _, r := range d.Matched {
			switch {
			case r.Effect != RequireApproval:
			case d.Quorum == nil:
				d.Quorum, first = r.Quorum, r.Name
			default:
				d.Quorum = d.Quorum.combine(first, r.Name, r.Quorum)
			}
		}
	case hasAllow:
		d.Effect = Allow
	default:
		d.Effect, d.Default, d.reason = cr.defaultEffect, true, cr.defaultReason
		return
	}
	for _, r := range d.Matched {
		if r.Effect == d.Effect && r.Tier > d.Tier {
			d.Tier = r.Tier
		}
	}
}

func (r *Rule) matchesPath(path string) bool {
	for _, p := range r.paths {
		if p.Match(path) {
			return true
		}
	}
	return false
}

// params returns the {name} segments of the first of r's paths that fits path (nil when r
// has no paths).
func (r *Rule) params(path string) map[string]string {
	for _, p := range r.paths {
		if params, ok := p.Params(path); ok {
			return params
		}
	}
	return nil
}
