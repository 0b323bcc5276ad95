// Package gate decides requests the one way every front end and the decisions API share:
// the policies, given the roles of the caller's active elevation grants, and then the
// caller's break-glass sessions, which allow what the policies would not. A front end
// classifies its protocol's request into a policy.Action and asks the gate; it enforces
// the answer.
package gate

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
)

// Gate decides. Its fields are set once and read concurrently.
type Gate struct {
	Config *configs.Config
	// Approvals holds grants and break-glass sessions, and the requests Hold makes; nil
	// decides on the policies alone (and cannot hold).
	Approvals *elevation.Approvals
	// Audit takes the events Hold and Await write.
	Audit *audit.Log
	Log   *slog.Logger
	// Tracer, when set, makes spans: the decision and the approval wait of a request
	// whose span is recorded (see Span).
	Tracer trace.Tracer
}

// Verdict is what the gate decided.
type Verdict struct {
	// Effect is what the front end does: Decision.Effect, or Allow under BreakGlass.
	Effect policy.Effect
	// Subject is who was decided for: the identity with its grants' roles.
	Subject *policy.Subject
	// BreakGlass is the break-glass session that allowed a request the policies did not.
	BreakGlass *elevation.Request
	// Grants are the roles of the caller's active elevation grants.
	Grants []string
}

// CredentialRole is the role whose upstream credentials the decided request runs with on
// res: break-glass's when a break-glass session allowed it, else the first active grant's
// that res has credentials for, else "" (the ordinary ones).
func (v *Verdict) CredentialRole(res *configs.Resource) string {
	if v.BreakGlass != nil {
		return configs.BreakGlassCredentials
	}
	for _, r := range v.Grants {
		if res.Credentials.HasRole(r) {
			return r
		}
	}
	return ""
}

// Decide decides act on resource for who at now, filling d with the policies' decision.
// A grant store that cannot be read fails closed: the identity is decided without its
// grants, and no break-glass session applies.
func (g *Gate) Decide(ctx context.Context, who *policy.Subject, resource string, act *policy.Action, now time.Time, d *policy.Decision) Verdict {
	ctx, span := g.child(ctx, "portcullis.decide")
	v := Verdict{Subject: g.Subject(ctx, who, now)}
	if n := len(who.Roles); len(v.Subject.Roles) > n {
		v.Grants = v.Subject.Roles[n:]
	}
	g.Config.Engine.Evaluate(&policy.Request{Subject: v.Subject, Resource: resource, Action: act, Time: now}, d)
	v.Effect = d.Effect
	if d.Effect != policy.Allow && g.Approvals != nil {
		if bg := g.Approvals.BreakGlassFor(ctx, who.User, resource, act.Class.String(), now); bg != nil {
			v.Effect, v.BreakGlass = policy.Allow, bg
		}
	}
	if span.IsRecording() {
		EndSpan(span, nil, attribute.String("portcullis.resource", resource), attribute.String("portcullis.class", act.Class.String()),
			attribute.String("portcullis.decision", v.Effect.String()), attribute.String("portcullis.policy_snapshot", d.Snapshot),
			attribute.Bool("portcullis.breakglass", v.BreakGlass != nil))
	}
	return v
}

// Subject returns who with the roles of their active elevation grants. If the grants
// cannot be read, it fails closed to who alone.
func (g *Gate) Subject(ctx context.Context, who *policy.Subject, now time.Time) *policy.Subject {
	if g.Approvals == nil {
		return who // no grants without an approvals service
	}
	roles, err := g.Approvals.Roles(ctx, who.User, now)
	if err != nil {
		g.log().Error("could not read elevation grants; deciding without them", "user", who.User, "err", err)
	}
	if len(roles) == 0 {
		return who
	}
	s := *who
	s.Roles = append(slices.Clip(s.Roles), roles...)
	return &s
}
