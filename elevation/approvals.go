package elevation

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// Errors of the approvals service; the API maps them to statuses.
var (
	// ErrNotEligible (403) covers self-approval and approvers the quorum does not name.
	ErrNotEligible = errors.New("not an eligible approver")
	// ErrForbidden (403) is any other refusal of who asks; each says why in its own words
	// (see refuse).
	ErrForbidden = errors.New("forbidden")
	// ErrAlreadyReviewed (409): this approver already decided on this request.
	ErrAlreadyReviewed = errors.New("you already reviewed this request")
	// ErrAlreadyDecided (409): the request is no longer pending.
	ErrAlreadyDecided = errors.New("the request was already decided")
	// ErrInvalid (422): malformed or missing input, such as a required comment.
	ErrInvalid = errors.New("invalid input")
	// ErrStoreUnavailable (503): the store could not be reached; nothing was changed.
	ErrStoreUnavailable = errors.New("approval store unavailable")
	// ErrNotApproved: the request may not run (not approved, already run, or its
	// artifact or policy snapshot changed).
	ErrNotApproved = errors.New("the request is not approved for this artifact")
)

// Approvals is the approval service: it creates requests, records votes against their
// quorum, and wakes the sessions waiting on them.
type Approvals struct {
	store Store
	now   func() time.Time

	mu       sync.Mutex
	waiters  map[string][]chan struct{}
	watchers []chan string
	grants   grantCache
	stop     context.CancelFunc
}

// changeNotifier is a store that tells about changes made by other replicas.
type changeNotifier interface {
	Changes(ctx context.Context) <-chan string
}

// NewApprovals returns the service over store. now is the clock (time.Now when nil).
// When the store announces changes (Redis), waiters wake as soon as another replica
// records a decision.
func NewApprovals(store Store, now func() time.Time) *Approvals {
	if now == nil {
		now = time.Now
	}
	a := &Approvals{store: store, now: now, waiters: map[string][]chan struct{}{}}
	if cn, ok := store.(changeNotifier); ok {
		ctx, cancel := context.WithCancel(context.Background())
		a.stop = cancel
		go func() {
			for id := range cn.Changes(ctx) {
				a.notify(id)
				a.grants.invalidate()
			}
		}()
	}
	return a
}

// Close stops listening for other replicas' changes.
func (a *Approvals) Close() {
	if a.stop != nil {
		a.stop()
	}
}

// Create stores a new pending request to run the statement of artifact and returns it.
func (a *Approvals) Create(ctx context.Context, requester *policy.Subject, session string, art Artifact) (*Request, error) {
	return a.create(ctx, requester, session, TypeStatement, art)
}

func (a *Approvals) create(ctx context.Context, requester *policy.Subject, session, typ string, art Artifact) (*Request, error) {
	if art.Quorum == nil {
		return nil, fmt.Errorf("%w: an approval request needs a quorum", ErrInvalid)
	}
	now := a.now().UTC()
	r := &Request{
		ID:           "apr_" + randomID(),
		Type:         typ,
		State:        StatePending,
		Requester:    *requester,
		Session:      session,
		Artifact:     art,
		ArtifactHash: art.Hash(),
		CreatedAt:    now,
		ExpiresAt:    now.Add(art.Quorum.Timeout),
		Timeline:     []TimelineEntry{{At: now, What: "requested", Who: requester.User}},
	}
	if typ == TypeStatement {
		r.WaiterUntil = now.Add(waiterLease) // its session waits for it from now
	}
	if err := a.store.Create(ctx, r); err != nil {
		return nil, fmt.Errorf("could not store the approval request: %w", err)
	}
	a.notify(r.ID)
	return r, nil
}

// refusal is an ErrForbidden that reads as its own words alone.
type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrForbidden }

// refuse returns an ErrForbidden saying why, and nothing else.
func refuse(format string, args ...any) error { return refusal(fmt.Sprintf(format, args...)) }

func randomID() string { return rand.Text()[:16] }

// Get returns the request id, marking it expired first if its time is up.
func (a *Approvals) Get(ctx context.Context, id string) (*Request, error) {
	r, err := a.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Pending() && !a.now().Before(r.ExpiresAt) {
		return a.expire(ctx, id)
	}
	return r, nil
}

// List returns every request, newest first, expiring those whose time is up.
func (a *Approvals) List(ctx context.Context) ([]*Request, error) {
	all, err := a.store.List(ctx)
	if err != nil {
		return nil, err
	}
	for i, r := range all {
		if r.Pending() && !a.now().Before(r.ExpiresAt) {
			if e, err := a.expire(ctx, r.ID); err == nil {
				all[i] = e
			}
		}
	}
	slices.Reverse(all)
	return all, nil
}

func (a *Approvals) expire(ctx context.Context, id string) (*Request, error) {
	r, err := a.finish(ctx, id, StateExpired, "", "nobody decided before the timeout")
	if errors.Is(err, ErrAlreadyDecided) {
		return a.store.Get(ctx, id)
	}
	return r, err
}

// CanApprove returns nil if who may vote on r now, or the reason not.
func CanApprove(r *Request, who *policy.Subject) error {
	if !r.Pending() {
		return ErrAlreadyDecided
	}
	for _, v := range r.Votes {
		if v.Approver.User == who.User {
			return ErrAlreadyReviewed
		}
	}
	q := r.Artifact.Quorum
	switch err := q.Eligible(&r.Requester, who); {
	case errors.Is(err, policy.ErrSelfApproval):
		return fmt.Errorf("%w: %v", ErrNotEligible, err)
	case err != nil:
		return fmt.Errorf("%w: this request is approved by %s", ErrNotEligible, describePrincipals(q.Approvers))
	}
	return nil
}

func describePrincipals(p policy.Principals) string {
	var parts []string
	for _, l := range []struct {
		what  string
		names []string
	}{{"user", p.Users}, {"group", p.Groups}, {"team", p.Teams}, {"role", p.Roles}} {
		for _, n := range l.names {
			parts = append(parts, l.what+" "+n)
		}
	}
	return strings.Join(parts, " or ")
}

// Approve records approver's approval; the request becomes approved when its quorum is met.
func (a *Approvals) Approve(ctx context.Context, id string, approver *policy.Subject, comment string) (*Request, error) {
	return a.vote(ctx, id, approver, true, comment)
}

// Deny records approver's denial, which denies the request.
func (a *Approvals) Deny(ctx context.Context, id string, approver *policy.Subject, comment string) (*Request, error) {
	return a.vote(ctx, id, approver, false, comment)
}

func (a *Approvals) vote(ctx context.Context, id string, who *policy.Subject, approve bool, comment string) (*Request, error) {
	if _, err := a.Get(ctx, id); err != nil { // expires it if due
		return nil, err
	}
	r, err := a.store.Update(ctx, id, func(r *Request) error {
		if err := CanApprove(r, who); err != nil {
			return err
		}
		if r.Artifact.Quorum.RequireReason && comment == "" {
			return fmt.Errorf("%w: the policy requires a comment", ErrInvalid)
		}
		now := a.now().UTC()
		r.Votes = append(r.Votes, Vote{Approver: *who, Approve: approve, Comment: comment, At: now})
		what := "approved"
		if !approve {
			what = "denied"
		}
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: what, Who: who.User, Note: comment})
		switch {
		case !approve:
			r.State, r.DecidedAt = StateDenied, now
		case r.Progress().Met():
			r.State, r.DecidedAt = StateApproved, now
			r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "quorum met"})
			if r.Type != TypeStatement {
				// The grant is issued in the same atomic update as the vote that
				// completes the quorum, so it cannot be issued twice or early.
				r.NotAfter = now.Add(r.Artifact.Duration)
				r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "granted", Note: "until " + r.NotAfter.Format(time.RFC3339)})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.notify(id)
	if r.Type != TypeStatement {
		a.grants.invalidate()
	}
	return r, nil
}

// Cancel withdraws a pending request; only its requester may.
func (a *Approvals) Cancel(ctx context.Context, id string, who *policy.Subject) (*Request, error) {
	r, err := a.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Requester.User != who.User {
		return nil, refuse("only the requester may cancel it")
	}
	return a.finish(ctx, id, StateCancelled, who.User, "")
}

// Abandon closes a pending request whose client went away or cancelled its statement.
func (a *Approvals) Abandon(ctx context.Context, id, why string) (*Request, error) {
	return a.finish(ctx, id, StateAbandoned, "", why)
}

// finish moves a pending request to a final state.
func (a *Approvals) finish(ctx context.Context, id, state, who, note string) (*Request, error) {
	r, err := a.store.Update(ctx, id, func(r *Request) error {
		if !r.Pending() {
			return ErrAlreadyDecided
		}
		now := a.now().UTC()
		r.State, r.DecidedAt = state, now
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: state, Who: who, Note: note})
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.notify(id)
	return r, nil
}

// recheck bounds how long a waiter goes without reading the store, so that a decision
// recorded by another Portcullis sharing the store is seen.
const recheck = time.Second

// Wait blocks until request id is no longer pending (expiring it at its timeout) or ctx
// ends, and returns it. A decision recorded through this service wakes it at once; one
// recorded by another replica sharing the store, within a second. Once it has read the
// request, it rides out a store outage (a Redis failover) until the request would have
// expired, reading again every recheck; an outage that lasts past that is returned.
func (a *Approvals) Wait(ctx context.Context, id string) (*Request, error) {
	var last *Request
	for {
		ch := a.subscribe(id)
		r, err := a.Get(ctx, id)
		wake := recheck
		switch {
		case err != nil && last != nil && errors.Is(err, ErrStoreUnavailable) && a.now().Before(last.ExpiresAt):
			r = last // the store is away; the request was pending when last read
		case err != nil || !r.Pending():
			a.unsubscribe(id, ch)
			return r, err
		default:
			last = r
			wake = min(recheck, max(0, time.Until(r.ExpiresAt)))
			if r.Type == TypeStatement && r.WaiterUntil.Sub(a.now()) < waiterLease/2 {
				// Renew the lease. A renewal lost to a store outage only lets a re-run of
				// the same statement take the request up: Consume still runs it once.
				a.store.Update(ctx, id, func(r *Request) error {
					if r.Pending() {
						r.WaiterUntil = a.now().UTC().Add(waiterLease)
					}
					return nil
				})
			}
		}
		timer := time.NewTimer(wake)
		select {
		case <-ch:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			a.unsubscribe(id, ch)
			return nil, ctx.Err()
		}
		timer.Stop()
		a.unsubscribe(id, ch)
	}
}

// waiterLease is how long a waiting session's claim on its request lasts unrenewed.
const waiterLease = 6 * time.Second

// Release gives up the waiting session's claim on a request it leaves pending (its
// Portcullis is shutting down), so that a re-run elsewhere takes it up at once.
func (a *Approvals) Release(ctx context.Context, id string) error {
	_, err := a.store.Update(ctx, id, func(r *Request) error {
		r.WaiterUntil = time.Time{}
		r.Timeline = append(r.Timeline, TimelineEntry{At: a.now().UTC(), What: "left pending for a re-run", Note: "its Portcullis shut down"})
		return nil
	})
	return err
}

// Adopt takes up, for session, the requester's request for the same statement (artifact
// hash) under the same policy snapshot that nobody waits for any more: pending, or
// approved and not yet run, with its waiter's lease lapsed. A lease still running (its
// session may be alive, or its replica was just killed) is waited out once, up to its
// length. It returns nil when there is none.
func (a *Approvals) Adopt(ctx context.Context, requester *policy.Subject, session, artifactHash, snapshot string) (*Request, error) {
	for attempt := 0; ; attempt++ {
		list, err := a.List(ctx)
		if err != nil {
			return nil, err
		}
		var found *Request
		for _, r := range list {
			if r.Type == TypeStatement && r.Requester.User == requester.User && r.ArtifactHash == artifactHash &&
				r.Artifact.Snapshot == snapshot && (r.Pending() || r.State == StateApproved) {
				found = r
				break
			}
		}
		if found == nil {
			return nil, nil
		}
		if wait := found.WaiterUntil.Sub(a.now()); wait > 0 {
			if attempt > 0 {
				return nil, nil // someone waits for it: this run asks anew
			}
			select {
			case <-time.After(wait + 100*time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		taken, err := a.store.Update(ctx, found.ID, func(r *Request) error {
			if (!r.Pending() && r.State != StateApproved) || r.WaiterUntil.After(a.now()) {
				return errTaken
			}
			now := a.now().UTC()
			r.WaiterUntil = now.Add(waiterLease)
			r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "taken up by a re-run", Note: "session " + session + " (the first session's Portcullis went away)"})
			r.Session = session
			return nil
		})
		if errors.Is(err, errTaken) {
			return nil, nil
		}
		if err == nil {
			a.notify(taken.ID)
		}
		return taken, err
	}
}

var errTaken = errors.New("taken up by another session")

// Consume marks an approved request as executed, once, if it was approved for exactly
// this artifact hash under this policy snapshot.
func (a *Approvals) Consume(ctx context.Context, id, artifactHash, snapshot string) (*Request, error) {
	return a.store.Update(ctx, id, func(r *Request) error {
		switch {
		case r.State != StateApproved:
			return fmt.Errorf("%w: it is %s", ErrNotApproved, r.State)
		case r.ArtifactHash != artifactHash:
			return fmt.Errorf("%w: the statement differs from the one approved", ErrNotApproved)
		case r.Artifact.Snapshot != snapshot:
			return fmt.Errorf("%w: the policies changed since it was approved", ErrNotApproved)
		}
		now := a.now().UTC()
		r.State = StateExecuted
		r.Timeline = append(r.Timeline, TimelineEntry{At: now, What: "released to run"}) // its outcome follows
		return nil
	})
}

// RecordOutcome records what became of an approved statement: it ran, failed upstream, or
// never ran. The first outcome stands.
func (a *Approvals) RecordOutcome(ctx context.Context, id string, o Outcome) (*Request, error) {
	r, err := a.store.Update(ctx, id, func(r *Request) error {
		switch {
		case r.Type != TypeStatement || r.State != StateExecuted && r.State != StateApproved:
			return fmt.Errorf("%w: request %s is %s", ErrInvalid, id, r.State)
		case r.Outcome != nil:
			return fmt.Errorf("%w: request %s already has its outcome", ErrAlreadyDecided, id)
		}
		o.At = a.now().UTC()
		r.Outcome = &o
		what := map[string]string{OutcomeRan: "ran", OutcomeFailed: "failed", OutcomeNotRun: "never ran", OutcomeUnknown: "outcome unknown"}[o.Result]
		r.Timeline = append(r.Timeline, TimelineEntry{At: o.At, What: what, Note: o.String()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.notify(id)
	return r, nil
}

func (a *Approvals) subscribe(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	a.mu.Lock()
	a.waiters[id] = append(a.waiters[id], ch)
	a.mu.Unlock()
	return ch
}

func (a *Approvals) unsubscribe(id string, ch chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := slices.DeleteFunc(a.waiters[id], func(c chan struct{}) bool { return c == ch })
	if len(w) == 0 {
		delete(a.waiters, id)
	} else {
		a.waiters[id] = w
	}
}

// notify wakes the waiters on id and tells every watcher that id changed.
func (a *Approvals) notify(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ch := range a.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	for _, ch := range a.watchers {
		select {
		case ch <- id:
		default: // a slow watcher misses a change; the console also re-checks on a timer
		}
	}
}

// Watch returns a channel that receives the id of every request this replica changes or
// hears another replica change (with Redis), until stop is called.
func (a *Approvals) Watch() (changes <-chan string, stop func()) {
	ch := make(chan string, 16)
	a.mu.Lock()
	a.watchers = append(a.watchers, ch)
	a.mu.Unlock()
	return ch, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.watchers = slices.DeleteFunc(a.watchers, func(c chan string) bool { return c == ch })
	}
}
