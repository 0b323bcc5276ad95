package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/policy"
)

// Errors of Hold and Await. A front end turns each into its protocol's answer.
var (
	// ErrNotRecorded: the approval request could not be stored; nothing will run.
	ErrNotRecorded = errors.New("the approval request could not be recorded")
	// ErrAudit: an event that must come before what follows could not be written;
	// nothing will run (a request made for it is abandoned).
	ErrAudit = errors.New("the audit log cannot be written")
	// ErrLostTrack: the store failed while waiting; the request is abandoned.
	ErrLostTrack = errors.New("the approval request could not be followed")
	// ErrRefused: approved, but not for this artifact and policy snapshot (the policies
	// changed meanwhile); it must be asked for again.
	ErrRefused = errors.New("the approval was refused")
	// ErrNotApproved: denied or expired; Await returns the request, with its votes.
	ErrNotApproved = errors.New("not approved")
)

// Withdrawn is Await's error when the wait ended on the front end's side (ctx's cause:
// the client cancelled or went away); the request is abandoned.
type Withdrawn struct{ Cause error }

func (w *Withdrawn) Error() string { return "withdrawn: " + w.Cause.Error() }
func (w *Withdrawn) Unwrap() error { return w.Cause }

// ErrShuttingDown is the cause with which a front end withdraws a wait when Portcullis
// shuts down: Await leaves the request pending for a re-run instead of abandoning it.
var ErrShuttingDown = errors.New("Portcullis is shutting down")

// Hold makes the approval request for art, asked by who in session, and writes ev — the
// event of the held action, decided before anything runs — with its result "waiting"
// and the request's id. If the event cannot be written, the request is abandoned and
// ErrAudit returned.
func (g *Gate) Hold(ctx context.Context, who *policy.Subject, session string, art elevation.Artifact, ev *audit.Event) (*elevation.Request, error) {
	// A re-run of a statement whose request was left waiting (its Portcullis was killed or
	// shut down) takes that request up, with the votes it has, rather than ask again.
	req, err := g.Approvals.Adopt(ctx, who, session, art.Hash(), art.Snapshot)
	if err != nil {
		g.log().Warn("could not look for a request to take up; asking anew", "session", session, "err", err)
	}
	if req != nil {
		ev.Attrs = append(ev.Attrs, audit.Bool("taken_up", true))
	} else {
		req, err = g.Approvals.Create(ctx, who, session, art)
	}
	if err != nil {
		g.log().Error("could not create an approval request", "session", session, "err", err)
		return nil, fmt.Errorf("%w: %v", ErrNotRecorded, err)
	}
	ev.Result = "waiting"
	if ev.Details == nil {
		ev.Details = map[string]any{}
	}
	ev.Details["approval"] = req.ID
	if err := g.Audit.Append(ctx, ev); err != nil {
		g.log().Error("audit write failed; the held action is refused", "session", session, "err", err)
		g.abandon(req.ID, session, "the audit log cannot be written")
		return nil, ErrAudit
	}
	return req, nil
}

// Closed is the event Await writes when a wait ends (its Type is the front end's, such as
// audit.TypePGApprovalClosed); Await fills in the result, reason and approvers.
type Closed = audit.Event

// Await waits for req's decision until ctx ends, then audits how the wait closed (closed).
// Approved: the approval is consumed — once, for exactly req's artifact hash under the
// policy snapshot in force now — and the request returned with a nil error. Denied or
// expired: ErrNotApproved with the request. ctx ended: *Withdrawn (the request is
// abandoned). Otherwise ErrRefused, ErrLostTrack or ErrAudit; nothing may run.
func (g *Gate) Await(ctx context.Context, req *elevation.Request, closed *Closed) (r *elevation.Request, err error) {
	ctx, span := g.child(ctx, "portcullis.approval.wait")
	defer func() {
		EndSpan(span, err, attribute.String("portcullis.approval", req.ID), attribute.String("portcullis.result", closed.Result))
	}()
	return g.await(ctx, req, closed)
}

func (g *Gate) await(ctx context.Context, req *elevation.Request, closed *Closed) (*elevation.Request, error) {
	if closed.Details == nil {
		closed.Details = map[string]any{}
	}
	closed.Details["approval"] = req.ID
	r, err := g.Approvals.Wait(ctx, req.ID)
	if err != nil {
		cause := context.Cause(ctx)
		if cause == nil || ctx.Err() == nil { // the store failed, not the front end
			g.log().Error("waiting for an approval failed", "session", req.Session, "approval", req.ID, "err", err)
			g.abandon(req.ID, req.Session, "Portcullis could not read the approval request: "+err.Error())
			return nil, fmt.Errorf("%w: %v", ErrLostTrack, err)
		}
		if errors.Is(cause, ErrShuttingDown) {
			// Left pending: the client is told to run the statement again, on another
			// replica, which takes the request up (Hold).
			if err := g.Approvals.Release(context.WithoutCancel(ctx), req.ID); err != nil {
				g.log().Warn("could not release a request left pending; a re-run takes it up once its lease lapses", "approval", req.ID, "err", err)
			}
			closed.Result, closed.Reason = "left_pending", cause.Error()+"; the request stays pending for a re-run"
			g.auditLoudly(closed)
			return nil, &Withdrawn{Cause: cause}
		}
		g.abandon(req.ID, req.Session, cause.Error())
		closed.Result, closed.Reason = elevation.StateAbandoned, cause.Error()
		g.auditLoudly(closed)
		return nil, &Withdrawn{Cause: cause}
	}
	var approvers []string
	for _, v := range r.Votes {
		if v.Approve {
			approvers = append(approvers, v.Approver.User)
		}
	}
	closed.Result, closed.PolicyHash = r.State, r.Artifact.Snapshot
	closed.Details["approvers"] = approvers
	if r.State != elevation.StateApproved {
		g.auditLoudly(closed)
		return r, ErrNotApproved
	}
	if _, err := g.Approvals.Consume(ctx, r.ID, req.ArtifactHash, g.Config.Engine.Snapshot()); err != nil {
		closed.Result, closed.Reason = "refused", err.Error()
		g.auditLoudly(closed)
		return r, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	closed.Result, closed.Decision = "approved", policy.Allow.String()
	if err := g.Audit.Append(ctx, closed); err != nil {
		g.log().Error("audit write failed; the approved action is refused", "approval", r.ID, "err", err)
		return r, ErrAudit
	}
	return r, nil
}

// abandon closes a request nobody will wait for; a failure is logged.
func (g *Gate) abandon(id, session, why string) {
	if _, err := g.Approvals.Abandon(context.Background(), id, why); err != nil {
		g.log().Error("could not close an abandoned approval request; it stays pending until it expires", "approval", id, "session", session, "err", err)
	}
}

// auditLoudly writes an event on a path where nothing runs whatever happens: a failure
// changes nothing for the caller, and is logged loudly.
func (g *Gate) auditLoudly(ev *audit.Event) {
	if err := g.Audit.Append(context.Background(), ev); err != nil {
		g.log().Error("AUDIT WRITE FAILED; the event is lost", "type", ev.Type, "session", ev.Session, "actor", ev.Actor, "result", ev.Result, "err", err)
	}
}

func (g *Gate) log() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}
