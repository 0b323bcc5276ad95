package elevation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// Request states. A pending request ends in exactly one of the others.
const (
	StatePending   = "pending"
	StateApproved  = "approved"  // quorum met; the artifact may run once
	StateExecuted  = "executed"  // the approved artifact ran
	StateDenied    = "denied"    // an eligible approver denied it
	StateExpired   = "expired"   // nobody decided before the timeout
	StateCancelled = "cancelled" // the requester withdrew it
	StateAbandoned = "abandoned" // the waiting client went away
	StateEnded     = "ended"     // an elevation grant reached its not_after
	StateRevoked   = "revoked"   // an elevation grant was ended early
)

// Request types: one queue holds both.
const (
	TypeStatement  = "statement"  // run one statement
	TypeElevation  = "elevation"  // hold a role for a time
	TypeBreakGlass = "breakglass" // emergency access to a scope for a time
)

// Artifact is exactly what a request asks to do. Its hash binds an approval to it: a
// changed statement, parameter, estimate or policy needs a new request.
type Artifact struct {
	Resource  string   `json:"resource"`
	Statement string   `json:"statement"`
	Params    []string `json:"params,omitempty"` // as the client sent them (binary as \x hex)
	// Body is an HTTP request's body as approvers see it: secret-looking fields redacted,
	// large or binary bodies described. Its exact bytes are bound by Params' body-sha256.
	Body string `json:"body,omitempty"`
	// Preview is what the approver sees would change, computed by the front end before
	// the request is held: for Kubernetes, the API server's dry run as a diff against the
	// live object, or the objects a delete removes. It is part of the hash: the same
	// request against a changed object is not what was approved.
	Preview       string         `json:"preview,omitempty"`
	Class         string         `json:"class"`
	Kind          string         `json:"kind,omitempty"`
	Tables        []string       `json:"tables,omitempty"`
	Functions     []string       `json:"functions,omitempty"`
	EstimatedRows int64          `json:"estimated_rows"`
	Rules         []RuleRef      `json:"rules"`
	Quorum        *policy.Quorum `json:"quorum"`
	Snapshot      string         `json:"policy_snapshot"`
	Requester     string         `json:"requester"`
	// Elevations: the role asked for, for how long, why.
	Role     string        `json:"role,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Ticket   string        `json:"ticket,omitempty"`
	Grants   []GrantScope  `json:"grants,omitempty"`
	// Break-glass: the tier that chose the path, and whether a budget was exceeded.
	Tier      string `json:"tier,omitempty"`
	Escalated bool   `json:"escalated,omitempty"`
	Emergency bool   `json:"emergency,omitempty"`
}

// GrantScope is what an elevation role grants: action classes on resources.
type GrantScope struct {
	Resources []string `json:"resources"`
	Actions   []string `json:"actions"`
}

// Hash returns the SHA-256 (hex) of the artifact's canonical JSON.
func (a *Artifact) Hash() string {
	b, _ := json.Marshal(a)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// RuleRef is a matched policy as recorded in a request.
type RuleRef struct {
	Name        string `json:"name"`
	Effect      string `json:"effect"`
	Tier        string `json:"tier"`
	Description string `json:"description,omitempty"`
}

// Vote is one approver's decision.
type Vote struct {
	Approver policy.Subject `json:"approver"`
	Approve  bool           `json:"approve"`
	Comment  string         `json:"comment,omitempty"`
	At       time.Time      `json:"at"`
}

// TimelineEntry is one thing that happened to a request.
type TimelineEntry struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
	Who  string    `json:"who,omitempty"`
	Note string    `json:"note,omitempty"`
}

// Request is an approval request.
type Request struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	State        string         `json:"state"`
	Requester    policy.Subject `json:"requester"`
	Session      string         `json:"session,omitempty"`
	Artifact     Artifact       `json:"artifact"`
	ArtifactHash string         `json:"artifact_hash"`
	CreatedAt    time.Time      `json:"created_at"`
	ExpiresAt    time.Time      `json:"expires_at"`
	DecidedAt    time.Time      `json:"decided_at,omitzero"`
	// NotAfter is when an approved elevation's grant ends.
	NotAfter time.Time `json:"not_after,omitzero"`
	Votes    []Vote    `json:"votes"`
	// Break-glass reviews after the fact; ReviewsNeeded is 2 when a budget was exceeded.
	Reviews       []Review        `json:"reviews,omitempty"`
	ReviewsNeeded int             `json:"reviews_needed,omitempty"`
	Timeline      []TimelineEntry `json:"timeline"`
	// Outcome is how an approved statement ended upstream, once the front end knows.
	Outcome *Outcome `json:"outcome,omitempty"`
	// WaiterUntil is the lease of the session waiting for a statement's decision, renewed
	// while it waits: a request whose lease has lapsed (its replica was killed, or shut
	// down) is taken up by the requester's re-run of the same statement (see Adopt).
	WaiterUntil time.Time `json:"waiter_until,omitzero"`
}

// Outcome results.
const (
	OutcomeRan     = "ran"     // the server completed it (Tag)
	OutcomeFailed  = "failed"  // the server answered an error (Code, Message)
	OutcomeNotRun  = "not_run" // it never reached the server (Message says why)
	OutcomeUnknown = "unknown" // the session ended before the server answered
)

// Outcome is what became of an approved statement.
type Outcome struct {
	Result  string    `json:"result"`
	Tag     string    `json:"tag,omitempty"`
	Code    string    `json:"code,omitempty"` // SQLSTATE
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// String says what became of the statement in a few words: "UPDATE 1", "42501:
// permission denied for table orders".
func (o *Outcome) String() string {
	switch o.Result {
	case OutcomeRan:
		return o.Tag
	case OutcomeFailed:
		return o.Code + ": " + o.Message
	}
	return o.Message
}

// Status is the request's state as people should read it: for an approved statement that
// ran, what became of it (executed, failed, never ran, outcome unknown); otherwise State.
func (r *Request) Status() string {
	if r.Outcome == nil || r.State != StateExecuted && r.State != StateApproved {
		return r.State
	}
	switch r.Outcome.Result {
	case OutcomeRan:
		return StateExecuted
	case OutcomeFailed:
		return "failed"
	case OutcomeNotRun:
		return "never ran"
	}
	return "outcome unknown"
}

// StatusNote details Status: the command tag, the error, or why it never ran.
func (r *Request) StatusNote() string {
	if r.Outcome == nil || r.State != StateExecuted && r.State != StateApproved {
		return ""
	}
	return r.Outcome.String()
}

// Pending reports whether the request still waits for a decision.
func (r *Request) Pending() bool { return r.State == StatePending }

// ActiveGrant reports whether r is an elevation or break-glass session that holds at now.
func (r *Request) ActiveGrant(now time.Time) bool {
	return (r.Type == TypeElevation || r.Type == TypeBreakGlass) && r.State == StateApproved && now.Before(r.NotAfter)
}

// Covers reports whether the grant's scope includes class on resource.
func (r *Request) Covers(resource, class string) bool {
	for _, g := range r.Artifact.Grants {
		if slices.Contains(g.Resources, resource) && slices.Contains(g.Actions, class) {
			return true
		}
	}
	return false
}

// Review is a security reviewer's verdict on an ended break-glass session.
type Review struct {
	Reviewer string    `json:"reviewer"`
	Outcome  string    `json:"outcome"` // justified, unjustified, needs-policy-change
	Notes    string    `json:"notes,omitempty"`
	At       time.Time `json:"at"`
}

// Progress returns how far the approvals so far go toward each quorum term.
func (r *Request) Progress() policy.Progress {
	var approvers []*policy.Subject
	for i := range r.Votes {
		if r.Votes[i].Approve {
			approvers = append(approvers, &r.Votes[i].Approver)
		}
	}
	return r.Artifact.Quorum.Progress(&r.Requester, approvers)
}

func (r *Request) clone() *Request {
	b, err := json.Marshal(r)
	c := &Request{}
	if err == nil {
		err = json.Unmarshal(b, c)
	}
	if err != nil {
		panic("elevation: a request does not survive its own encoding: " + err.Error()) // plain data; a test guards it
	}
	return c
}
