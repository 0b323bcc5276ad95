package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/human"
)

// DefaultApprovalTimeout is how long a request waits for its quorum when no policy says.
const DefaultApprovalTimeout = 15 * time.Minute

// Errors returned by Quorum.Eligible.
var (
	ErrSelfApproval = errors.New("requesters may not approve their own request")
	ErrNotEligible  = errors.New("not an eligible approver")
)

// Quorum is the approval rule a request must satisfy. When several approval policies match,
// each policy's quorum must be met on its own terms (Parts): an approval counts toward
// every part whose approvers include the approver, never toward one whose approvers do
// not. The combined quorum's own fields sum up the parts for display and for who may
// vote at all: the larger minimum, required users, teams and roles added up, approvers
// pooled; the requester may approve only if every policy allows it, a reason is needed if
// any policy asks, and the shortest timeout applies.
type Quorum struct {
	MinApprovals     int      `json:"min_approvals"`
	MinDistinctTeams int      `json:"min_distinct_teams,omitempty"`
	RequiredUsers    []string `json:"required_users,omitempty"`
	RequiredTeams    []string `json:"required_teams,omitempty"`
	RequiredRoles    []string `json:"required_roles,omitempty"`
	// Approvers are who may approve. AnyApprover is set instead when the quorum accepts
	// any identity other than the requester.
	Approvers           Principals    `json:"approvers"`
	AnyApprover         bool          `json:"any_approver,omitempty"`
	RequesterCanApprove bool          `json:"requester_can_approve"`
	RequireReason       bool          `json:"require_reason,omitempty"`
	Timeout             time.Duration `json:"timeout"`
	// Parts are the quorums of each matching policy, when more than one matched.
	Parts []QuorumPart `json:"parts,omitempty"`
}

// QuorumPart is the quorum of one of several matching approval policies.
type QuorumPart struct {
	Policy string  `json:"policy"`
	Quorum *Quorum `json:"quorum"`
}

// CompileQuorum validates a quorum as written and returns it with its defaults applied.
func CompileQuorum(q *QuorumSpec) (*Quorum, error) {
	c := &Quorum{
		MinApprovals:        q.MinApprovals,
		MinDistinctTeams:    q.MinDistinctTeams,
		RequiredUsers:       sortedCopy(q.RequiredUsers),
		RequiredTeams:       sortedCopy(q.RequiredTeams),
		RequiredRoles:       sortedCopy(q.RequiredRoles),
		Approvers:           q.Approvers,
		RequesterCanApprove: q.RequesterCanApprove,
		RequireReason:       q.RequireReason,
		Timeout:             DefaultApprovalTimeout,
	}
	if c.MinApprovals < 0 || c.MinDistinctTeams < 0 {
		return nil, fmt.Errorf("min_approvals and min_distinct_teams must not be negative")
	}
	if q.Timeout != "" {
		d, err := time.ParseDuration(q.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout: invalid duration %q (want e.g. 15m or 2h)", q.Timeout)
		}
		c.Timeout = d
	}
	// A quorum always needs at least one approval, and at least as many as its distinct
	// teams ask for.
	c.MinApprovals = max(c.MinApprovals, 1, c.MinDistinctTeams)
	// Without an explicit approvers list, those named by the required terms approve; a
	// quorum that names nobody accepts anyone but the requester.
	if c.Approvers.empty() {
		c.Approvers = Principals{Users: c.RequiredUsers, Teams: c.RequiredTeams, Roles: c.RequiredRoles}
		c.AnyApprover = c.Approvers.empty()
	}
	c.Approvers = normalizePrincipals(c.Approvers)
	a := c.Approvers
	if !c.AnyApprover && len(a.Users)+len(a.Groups)+len(a.Roles) == 0 && len(a.Teams) < c.MinDistinctTeams {
		return nil, fmt.Errorf("min_distinct_teams %d cannot be met by approvers from teams %v alone; list the eligible approvers under approvers", c.MinDistinctTeams, a.Teams)
	}
	return c, nil
}

// combine returns the quorum of two or more matching policies: q, the first policy's
// (named first), and o's (named policy), each kept as a part that must be met.
func (q *Quorum) combine(first string, policy string, o *Quorum) *Quorum {
	c := q.clone()
	if len(c.Parts) == 0 {
		c.Parts = []QuorumPart{{Policy: first, Quorum: q}}
	}
	c.Parts = append(slices.Clip(c.Parts), QuorumPart{Policy: policy, Quorum: o})
	c.merge(o)
	return c
}

// merge folds o's fields into q's summary fields.
func (q *Quorum) merge(o *Quorum) {
	q.MinApprovals = max(q.MinApprovals, o.MinApprovals)
	q.MinDistinctTeams = max(q.MinDistinctTeams, o.MinDistinctTeams)
	q.RequiredUsers = union(q.RequiredUsers, o.RequiredUsers)
	q.RequiredTeams = union(q.RequiredTeams, o.RequiredTeams)
	q.RequiredRoles = union(q.RequiredRoles, o.RequiredRoles)
	q.Approvers = Principals{
		Users:  union(q.Approvers.Users, o.Approvers.Users),
		Groups: union(q.Approvers.Groups, o.Approvers.Groups),
		Teams:  union(q.Approvers.Teams, o.Approvers.Teams),
		Roles:  union(q.Approvers.Roles, o.Approvers.Roles),
	}
	q.AnyApprover = q.AnyApprover || o.AnyApprover
	q.RequesterCanApprove = q.RequesterCanApprove && o.RequesterCanApprove
	q.RequireReason = q.RequireReason || o.RequireReason
	q.Timeout = min(q.Timeout, o.Timeout)
}

func (q *Quorum) clone() *Quorum {
	c := *q
	c.Parts = slices.Clone(q.Parts)
	c.RequiredUsers = slices.Clone(q.RequiredUsers)
	c.RequiredTeams = slices.Clone(q.RequiredTeams)
	c.RequiredRoles = slices.Clone(q.RequiredRoles)
	c.Approvers = Principals{
		Users: slices.Clone(q.Approvers.Users), Groups: slices.Clone(q.Approvers.Groups),
		Teams: slices.Clone(q.Approvers.Teams), Roles: slices.Clone(q.Approvers.Roles),
	}
	return &c
}

// Eligible returns nil if approver may approve a request made by requester: the approver
// is not the requester (unless the quorum allows it) and is one of its Approvers, or the
// quorum accepts anyone.
func (q *Quorum) Eligible(requester, approver *Subject) error {
	if approver == nil {
		return ErrNotEligible
	}
	if requester != nil && approver.User == requester.User && !q.RequesterCanApprove {
		return ErrSelfApproval
	}
	if q.AnyApprover || q.Approvers.matchesAny(approver) {
		return nil
	}
	return ErrNotEligible
}

// Term is one condition of a quorum and how far the approvals so far go toward it.
type Term struct {
	// Policy is the policy whose quorum the term belongs to, when several matched.
	Policy string `json:"policy,omitempty"`
	Name   string `json:"name"`
	Have   int    `json:"have"`
	Need   int    `json:"need"`
}

// Met reports whether the term is satisfied.
func (t Term) Met() bool { return t.Have >= t.Need }

func (t Term) String() string {
	mark := ""
	if t.Met() {
		mark = " ✓"
	}
	if t.Policy != "" {
		return fmt.Sprintf("%s %s: %d/%d%s", t.Policy, t.Name, t.Have, t.Need, mark)
	}
	return fmt.Sprintf("%s: %d/%d%s", t.Name, t.Have, t.Need, mark)
}

// TermApprovers returns who may satisfy term t of q (a term Progress returned): the
// principals whose approval counts toward it, or anyone (but the requester, unless the
// quorum allows) when anyone is set.
func (q *Quorum) TermApprovers(t Term) (p Principals, anyone bool) {
	if t.Policy != "" {
		for _, part := range q.Parts {
			if part.Policy == t.Policy {
				return part.Quorum.TermApprovers(Term{Name: t.Name})
			}
		}
	}
	kind, name, _ := strings.Cut(t.Name, " ")
	switch kind {
	case "user":
		return Principals{Users: []string{name}}, false
	case "team":
		return Principals{Teams: []string{name}}, false
	case "role":
		return Principals{Roles: []string{name}}, false
	}
	return q.Approvers, q.AnyApprover
}

// Progress is the state of a quorum given a set of approvals.
type Progress struct {
	Terms []Term `json:"terms"`
}

// Met reports whether every term is satisfied.
func (p Progress) Met() bool {
	for _, t := range p.Terms {
		if !t.Met() {
			return false
		}
	}
	return true
}

// Progress counts approvers toward each term of the quorum. Approvers that are not eligible
// (see Eligible) and repeated approvals by the same user count for nothing. With Parts,
// each part is counted on its own terms, its terms named by its policy.
func (q *Quorum) Progress(requester *Subject, approvers []*Subject) Progress {
	if len(q.Parts) > 0 {
		var p Progress
		for _, part := range q.Parts {
			pp := part.Quorum.Progress(requester, approvers)
			for _, t := range pp.Terms {
				t.Policy = part.Policy
				p.Terms = append(p.Terms, t)
			}
		}
		return p
	}
	var counted []*Subject
	seen := map[string]bool{}
	for _, a := range approvers {
		if a == nil || seen[a.User] || q.Eligible(requester, a) != nil {
			continue
		}
		seen[a.User] = true
		counted = append(counted, a)
	}
	p := Progress{Terms: []Term{{Name: "approvals", Have: len(counted), Need: q.MinApprovals}}}
	if q.MinDistinctTeams > 0 {
		teams := map[string]bool{}
		for _, a := range counted {
			for _, t := range a.Teams {
				teams[t] = true
			}
		}
		p.Terms = append(p.Terms, Term{Name: "distinct teams", Have: min(len(teams), q.MinDistinctTeams), Need: q.MinDistinctTeams})
	}
	count := func(name string, ok func(*Subject) bool) {
		t := Term{Name: name, Need: 1}
		for _, a := range counted {
			if ok(a) {
				t.Have = 1
				break
			}
		}
		p.Terms = append(p.Terms, t)
	}
	for _, u := range q.RequiredUsers {
		count("user "+u, func(s *Subject) bool { return s.User == u })
	}
	for _, team := range q.RequiredTeams {
		count("team "+team, func(s *Subject) bool { return s.InTeam(team) })
	}
	for _, r := range q.RequiredRoles {
		count("role "+r, func(s *Subject) bool { return s.HasRole(r) })
	}
	return p
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

func union(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	return sortedCopy(append(slices.Clone(a), b...))
}

// MarshalJSON writes the timeout as a duration string, as configured ("15m").
func (q Quorum) MarshalJSON() ([]byte, error) {
	type plain Quorum
	return json.Marshal(struct {
		plain
		Timeout string `json:"timeout"`
	}{plain(q), human.Duration(q.Timeout)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (q *Quorum) UnmarshalJSON(b []byte) error {
	type plain Quorum
	var v struct {
		plain
		Timeout string `json:"timeout"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*q = Quorum(v.plain)
	if v.Timeout != "" {
		d, err := time.ParseDuration(v.Timeout)
		if err != nil {
			return fmt.Errorf("quorum timeout: %w", err)
		}
		q.Timeout = d
	}
	return nil
}
