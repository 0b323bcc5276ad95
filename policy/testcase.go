package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Case is one policy unit test: a request and what its decision must be. The configs
// package reads cases from YAML files; `portcullis policy test` runs them.
type Case struct {
	Name    string      `yaml:"name"`
	Request CaseRequest `yaml:"request"`
	Expect  Expectation `yaml:"expect"`
}

// CaseRequest is the request of a Case. The subject is a static identity of the
// configuration (As) or written out (Subject); Roles adds roles to it, as an active
// elevation grant would.
type CaseRequest struct {
	As       string     `yaml:"as"`
	Subject  *Subject   `yaml:"subject"`
	Roles    []string   `yaml:"roles"`
	Resource string     `yaml:"resource"`
	Action   CaseAction `yaml:"action"`
	Time     *time.Time `yaml:"time"`
}

// CaseAction is the action of a CaseRequest; see Action. EstimatedRows left out means
// the estimate is unknown (-1).
type CaseAction struct {
	Class          string   `yaml:"class"`
	Kind           string   `yaml:"kind"`
	Statement      string   `yaml:"statement"`
	Tables         []string `yaml:"tables"`
	Schemas        []string `yaml:"schemas"`
	Functions      []string `yaml:"functions"`
	EstimatedRows  *int64   `yaml:"estimated_rows"`
	MultiStatement bool     `yaml:"multi_statement"`
	InTransaction  bool     `yaml:"in_transaction"`
	Method         string   `yaml:"method"`
	Path           string   `yaml:"path"`
	Namespace      string   `yaml:"namespace"`
}

// Action returns the Action the case describes.
func (a *CaseAction) Action() (*Action, error) {
	c, err := ParseClass(a.Class)
	if err != nil {
		return nil, err
	}
	act := &Action{Class: c, Kind: a.Kind, Statement: a.Statement, Tables: a.Tables, Schemas: a.Schemas,
		Functions: a.Functions, EstimatedRows: -1, MultiStatement: a.MultiStatement, InTransaction: a.InTransaction,
		Method: a.Method, Path: a.Path, Namespace: a.Namespace}
	if a.EstimatedRows != nil {
		act.EstimatedRows = *a.EstimatedRows
	}
	return act, nil
}

// Expectation is what a Case's decision must be. Only the fields given are checked.
type Expectation struct {
	Effect string `yaml:"effect"`
	// Rules, when given, must equal the matched rules in policy order; [] means none.
	Rules          []string      `yaml:"rules"`
	Default        *bool         `yaml:"default"`
	Tier           string        `yaml:"tier"`
	ReasonContains string        `yaml:"reason_contains"`
	Quorum         *QuorumExpect `yaml:"quorum"`
	// Votes check whether sets of approvers meet the decision's quorum.
	Votes []VoteCase `yaml:"votes"`
}

// VoteCase is a set of approvers and whether their approvals meet the quorum.
type VoteCase struct {
	Approvers []CaseVoter `yaml:"approvers"`
	Met       bool        `yaml:"met"`
}

// CaseVoter is an approver of a VoteCase: a static identity (As) or a written-out Subject.
type CaseVoter struct {
	As      string   `yaml:"as"`
	Subject *Subject `yaml:"subject"`
	Roles   []string `yaml:"roles"`
}

// QuorumExpect is the part of a combined quorum a Case checks.
type QuorumExpect struct {
	MinApprovals        *int     `yaml:"min_approvals"`
	MinDistinctTeams    *int     `yaml:"min_distinct_teams"`
	RequiredUsers       []string `yaml:"required_users"`
	RequiredTeams       []string `yaml:"required_teams"`
	RequiredRoles       []string `yaml:"required_roles"`
	RequesterCanApprove *bool    `yaml:"requester_can_approve"`
	RequireReason       *bool    `yaml:"require_reason"`
	Timeout             string   `yaml:"timeout"`
}

// Check evaluates the case with subject and returns the decision and one line per way it
// differs from the expectation (none when the case passes). voters are the resolved
// approvers of each of the expectation's Votes, in order.
func (e *Engine) Check(c *Case, subject *Subject, voters [][]*Subject) (*Decision, []string) {
	var diffs []string
	diff := func(field string, got, want any) {
		diffs = append(diffs, fmt.Sprintf("%-8s got %v, want %v", field+":", got, want))
	}
	act, err := c.Request.Action.Action()
	if err != nil {
		return nil, []string{"request.action: " + err.Error()}
	}
	req := &Request{Subject: subject, Resource: c.Request.Resource, Action: act, Time: time.Now()}
	if c.Request.Time != nil {
		req.Time = *c.Request.Time
	}
	d := &Decision{}
	e.Evaluate(req, d)
	x := &c.Expect
	if x.Effect == "" {
		diffs = append(diffs, "expect.effect is required")
	} else if x.Effect != d.Effect.String() {
		diff("effect", d.Effect, x.Effect)
	}
	if x.Rules != nil && !slices.Equal(x.Rules, d.RuleNames()) {
		diff("rules", d.RuleNames(), x.Rules)
	}
	if x.Default != nil && *x.Default != d.Default {
		diff("default", d.Default, *x.Default)
	}
	if x.Tier != "" && x.Tier != d.Tier.String() {
		diff("tier", d.Tier, x.Tier)
	}
	if x.ReasonContains != "" && !strings.Contains(d.Reason(), x.ReasonContains) {
		diff("reason", fmt.Sprintf("%q", d.Reason()), fmt.Sprintf("text containing %q", x.ReasonContains))
	}
	for i, v := range x.Votes {
		if d.Quorum == nil || i >= len(voters) {
			diff(fmt.Sprintf("votes[%d]", i), "no quorum", "a quorum")
			continue
		}
		p := d.Quorum.Progress(subject, voters[i])
		if p.Met() != v.Met {
			var names, terms []string
			for _, s := range voters[i] {
				names = append(names, s.User)
			}
			for _, t := range p.Terms {
				terms = append(terms, t.String())
			}
			diff(fmt.Sprintf("votes[%d] met by %v", i, names), fmt.Sprintf("%v (%s)", p.Met(), strings.Join(terms, ", ")), v.Met)
		}
	}
	if qx := x.Quorum; qx != nil {
		q := d.Quorum
		if q == nil {
			diff("quorum", "none", "a quorum")
			return d, diffs
		}
		if qx.MinApprovals != nil && *qx.MinApprovals != q.MinApprovals {
			diff("quorum.min_approvals", q.MinApprovals, *qx.MinApprovals)
		}
		if qx.MinDistinctTeams != nil && *qx.MinDistinctTeams != q.MinDistinctTeams {
			diff("quorum.min_distinct_teams", q.MinDistinctTeams, *qx.MinDistinctTeams)
		}
		for _, l := range []struct {
			name      string
			got, want []string
		}{{"required_users", q.RequiredUsers, qx.RequiredUsers}, {"required_teams", q.RequiredTeams, qx.RequiredTeams}, {"required_roles", q.RequiredRoles, qx.RequiredRoles}} {
			if l.want != nil && !slices.Equal(sortedCopy(l.want), l.got) {
				diff("quorum."+l.name, l.got, l.want)
			}
		}
		if qx.RequesterCanApprove != nil && *qx.RequesterCanApprove != q.RequesterCanApprove {
			diff("quorum.requester_can_approve", q.RequesterCanApprove, *qx.RequesterCanApprove)
		}
		if qx.RequireReason != nil && *qx.RequireReason != q.RequireReason {
			diff("quorum.require_reason", q.RequireReason, *qx.RequireReason)
		}
		if qx.Timeout != "" {
			if want, err := time.ParseDuration(qx.Timeout); err != nil || want != q.Timeout {
				diff("quorum.timeout", q.Timeout, qx.Timeout)
			}
		}
	}
	return d, diffs
}
