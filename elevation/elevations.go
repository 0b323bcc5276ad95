package elevation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/human"
	"github.com/portcullis/portcullis/policy"
)

// ElevationRequest is what an engineer asks for.
type ElevationRequest struct {
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket"`
}

// RequestElevation validates an elevation request against the role's configuration and
// queues it for approval with the role's quorum.
func (a *Approvals) RequestElevation(ctx context.Context, cfg *configs.Config, requester *policy.Subject, in ElevationRequest) (*Request, error) {
	var role *configs.Role
	for i := range cfg.Roles {
		if cfg.Roles[i].Name == in.Role {
			role = &cfg.Roles[i]
		}
	}
	if role == nil {
		return nil, fmt.Errorf("%w: no elevation role %q", ErrInvalid, in.Role)
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("%w: duration %q is not a duration such as 1h", ErrInvalid, in.Duration)
	}
	if d > role.MaxDuration.D() {
		return nil, fmt.Errorf("%w: %s is longer than role %s allows (%s)", ErrInvalid, human.Duration(d), role.Name, role.MaxDuration)
	}
	if len(role.Durations) > 0 && !slices.ContainsFunc(role.Durations, func(x configs.Duration) bool { return x.D() == d }) {
		var allowed []string
		for _, x := range role.Durations {
			allowed = append(allowed, x.String())
		}
		return nil, fmt.Errorf("%w: role %s may be asked for %s, not %s", ErrInvalid, role.Name, strings.Join(allowed, ", "), human.Duration(d))
	}
	in.Reason, in.Ticket = strings.TrimSpace(in.Reason), strings.TrimSpace(in.Ticket)
	if role.RequireReason && in.Reason == "" {
		return nil, fmt.Errorf("%w: role %s requires a reason", ErrInvalid, role.Name)
	}
	if role.RequireTicket && in.Ticket == "" {
		return nil, fmt.Errorf("%w: role %s requires a ticket", ErrInvalid, role.Name)
	}
	q, err := policy.CompileQuorum(role.Quorum)
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", role.Name, err)
	}
	art := Artifact{Role: role.Name, Duration: d, Reason: in.Reason, Ticket: in.Ticket, Quorum: q, Snapshot: cfg.Engine.Snapshot(),
		Requester: requester.User, Class: "elevation"}
	var resources []string
	for _, g := range role.Grants {
		art.Grants = append(art.Grants, GrantScope{Resources: g.Resources, Actions: g.Actions})
		for _, r := range g.Resources {
			if !slices.Contains(resources, r) {
				resources = append(resources, r)
			}
		}
	}
	art.Resource = strings.Join(resources, ",")
	return a.create(ctx, requester, "", TypeElevation, art)
}

// Revoke ends an active grant (or withdraws a pending elevation request) early. The
// requester, anyone who voted on it, and admins may.
func (a *Approvals) Revoke(ctx context.Context, id string, who *policy.Subject, admin bool) (*Request, error) {
	r, err := a.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Type == TypeStatement {
		return nil, fmt.Errorf("%w: %s is not an elevation or break-glass session", ErrInvalid, id)
	}
	allowed := admin || r.Requester.User == who.User
	for _, v := range r.Votes {
		allowed = allowed || v.Approver.User == who.User
	}
	if !allowed {
		return nil, refuse("only the requester, an approver or an admin may revoke it")
	}
	out, err := a.store.Update(ctx, id, func(r *Request) error {
		now := a.now().UTC()
		switch {
		case r.Pending():
			r.State = StateCancelled
		case r.ActiveGrant(now):
			r.State, r.NotAfter = StateRevoked, now
		default:
			return ErrAlreadyDecided
		}
		r.DecidedAt = now
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: r.State, Who: who.User})
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.notify(id)
	a.grants.invalidate()
	return out, nil
}

// grantCache knows the active grants of every user, reloaded from the store when a grant
// changes here and every second (for grants changed by another replica).
type grantCache struct {
	mu     sync.RWMutex
	byUser map[string][]*Request
	loaded time.Time
	stale  bool
}

func (g *grantCache) invalidate() {
	g.mu.Lock()
	g.stale = true
	g.mu.Unlock()
}

// grantTTL is how long the grant cache is trusted before it is reloaded.
const grantTTL = time.Second

// Roles returns the roles user holds through active grants at now, or nil. It reloads
// the cache from the store when it is stale; on a store failure it fails closed (no
// grant roles) and returns the error.
func (a *Approvals) Roles(ctx context.Context, user string, now time.Time) ([]string, error) {
	grants, err := a.Grants(ctx, user, now)
	var roles []string
	for _, r := range grants {
		if r.Type == TypeElevation && !slices.Contains(roles, r.Artifact.Role) {
			roles = append(roles, r.Artifact.Role)
		}
	}
	return roles, err
}

// Grants returns user's elevation requests whose grants hold at now (shared; do not
// modify them).
func (a *Approvals) Grants(ctx context.Context, user string, now time.Time) ([]*Request, error) {
	g := &a.grants
	g.mu.RLock()
	fresh := !g.stale && now.Sub(g.loaded) < grantTTL && !now.Before(g.loaded)
	grants := g.byUser[user]
	g.mu.RUnlock()
	if !fresh {
		if err := a.reloadGrants(ctx, now); err != nil {
			return nil, err
		}
		g.mu.RLock()
		grants = g.byUser[user]
		g.mu.RUnlock()
	}
	var out []*Request
	for _, r := range grants {
		if r.ActiveGrant(now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// grantLister is a store with an index of active grants.
type grantLister interface {
	ActiveGrants(ctx context.Context, now time.Time) ([]*Request, error)
}

func (a *Approvals) reloadGrants(ctx context.Context, now time.Time) error {
	var all []*Request
	var err error
	if gl, ok := a.store.(grantLister); ok {
		all, err = gl.ActiveGrants(ctx, now)
	} else {
		all, err = a.store.List(ctx)
	}
	if err != nil {
		// Fail closed — no grant roles — until the next attempt, a second from now, so that
		// an outage does not make every statement wait on the store.
		a.grants.mu.Lock()
		a.grants.byUser, a.grants.loaded, a.grants.stale = nil, now, false
		a.grants.mu.Unlock()
		return fmt.Errorf("could not read grants: %w", err)
	}
	by := map[string][]*Request{}
	for _, r := range all {
		if r.ActiveGrant(now) {
			by[r.Requester.User] = append(by[r.Requester.User], r)
		}
	}
	a.grants.mu.Lock()
	a.grants.byUser, a.grants.loaded, a.grants.stale = by, now, false
	a.grants.mu.Unlock()
	return nil
}

// EndExpired marks grants past their not_after as ended and returns them; a sweeper calls
// it every second so that expiry is acted on (audited, connections cut) without a human.
// Decisions never depend on it: Roles checks not_after itself.
func (a *Approvals) EndExpired(ctx context.Context) ([]*Request, error) {
	all, err := a.store.List(ctx)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC()
	var ended []*Request
	for _, r := range all {
		if r.Type == TypeStatement || r.State != StateApproved || now.Before(r.NotAfter) {
			continue
		}
		out, err := a.store.Update(ctx, r.ID, func(r *Request) error {
			if r.State != StateApproved || now.Before(r.NotAfter) {
				return ErrAlreadyDecided
			}
			r.State = StateEnded
			r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: StateEnded, Note: "the grant reached its not_after"})
			return nil
		})
		if errors.Is(err, ErrAlreadyDecided) {
			continue
		}
		if err != nil {
			return ended, err
		}
		ended = append(ended, out)
	}
	if len(ended) > 0 {
		a.grants.invalidate()
	}
	return ended, nil
}
