package gate

import (
	"context"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
)

// Errors of Redeem.
var (
	// ErrPending: the request has not been decided yet.
	ErrPending = errors.New("the approval request is still pending")
	// ErrDiffers: what is presented is not what was approved (or the policies changed
	// since, which changes the artifact).
	ErrDiffers = errors.New("this is not the artifact that was approved")
	// ErrUsed: the approval was used already; an approval runs its artifact once.
	ErrUsed = errors.New("the approval was used already")
)

// Redeem runs an approval the caller presents again later (an HTTP client re-sending its
// request with Portcullis-Approval): request id must be who's own, approved for exactly
// art (its hash) under the policy snapshot in force, and not used. It is then consumed —
// once — and the close audited. Errors: ErrPending (with the request), ErrNotApproved,
// ErrUsed, ErrDiffers, elevation.ErrNotFound (also for another's request), ErrAudit.
func (g *Gate) Redeem(ctx context.Context, who *policy.Subject, id string, art elevation.Artifact, closed *Closed) (*elevation.Request, error) {
	r, err := g.Approvals.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Requester.User != who.User {
		return nil, elevation.ErrNotFound // another's request is not there to redeem
	}
	switch r.State {
	case elevation.StatePending:
		return r, ErrPending
	case elevation.StateExecuted:
		return r, ErrUsed
	case elevation.StateApproved:
	default:
		return r, ErrNotApproved
	}
	if r.Type != elevation.TypeStatement || r.ArtifactHash != art.Hash() {
		return r, ErrDiffers
	}
	if closed.Details == nil {
		closed.Details = map[string]any{}
	}
	closed.Details["approval"] = r.ID
	if _, err := g.Approvals.Consume(ctx, r.ID, r.ArtifactHash, g.Config.Engine.Snapshot()); err != nil {
		closed.Result, closed.Reason = "refused", err.Error()
		g.auditLoudly(closed)
		if errors.Is(err, elevation.ErrNotApproved) {
			return r, fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return r, err
	}
	closed.Result, closed.Decision, closed.PolicyHash = "approved", policy.Allow.String(), r.Artifact.Snapshot
	if err := g.Audit.Append(ctx, closed); err != nil {
		g.log().Error("audit write failed; the approved action is refused", "approval", r.ID, "err", err)
		return r, ErrAudit
	}
	return r, nil
}
