package elevation

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/portcullis/portcullis/configs"
)

// Stats are the health numbers of break-glass and approvals.
type Stats struct {
	BreakGlass         int            `json:"breakglass_sessions"`
	ByTeam             map[string]int `json:"breakglass_by_team"`
	ByPolicy           map[string]int `json:"breakglass_by_policy"`
	PolicyBlocks       int            `json:"policy_blocks"`
	BreakGlassPerBlock float64        `json:"breakglass_to_blocks_ratio"`
	Approved           int            `json:"approvals_approved"`
	Denied             int            `json:"approvals_denied"`
	ApproveRatio       float64        `json:"approve_ratio"`
	DecisionP50        float64        `json:"decision_seconds_p50"`
	DecisionP90        float64        `json:"decision_seconds_p90"`
	Ended              int            `json:"breakglass_ended"`
	ReviewedInSLA      int            `json:"reviewed_within_sla"`
	ReviewedInSLAShare float64        `json:"reviewed_within_sla_share"`
	Overdue            int            `json:"reviews_overdue"`
	// PolicyChangeCandidates are policies bypassed by break-glass at least twice.
	PolicyChangeCandidates []string `json:"policy_change_candidates"`
}

// Stats computes the numbers over every request in the store; blocks is how many
// statements policy denied or held for approval (from the audit log).
func (a *Approvals) Stats(ctx context.Context, cfg *configs.Config, blocks int, now time.Time) (*Stats, error) {
	all, err := a.store.List(ctx)
	if err != nil {
		return nil, err
	}
	s := &Stats{ByTeam: map[string]int{}, ByPolicy: map[string]int{}, PolicyBlocks: blocks, PolicyChangeCandidates: []string{}}
	var decisions []float64
	sla := cfg.BreakGlass.ReviewSLA.D()
	for _, r := range all {
		if r.Type == TypeBreakGlass {
			s.BreakGlass++
			for _, t := range r.Requester.Teams {
				s.ByTeam[t]++
			}
			for _, p := range r.Artifact.Rules {
				s.ByPolicy[p.Name]++
			}
			if r.State == StateEnded || r.State == StateRevoked {
				s.Ended++
				need := max(1, r.ReviewsNeeded)
				switch {
				case len(r.Reviews) >= need && r.Reviews[need-1].At.Sub(r.NotAfter) <= sla:
					s.ReviewedInSLA++
				case len(r.Reviews) < need && now.Sub(r.NotAfter) > sla:
					s.Overdue++
				}
			}
		}
		// Decisions by humans: statements, elevations, and break-glass that waited.
		if len(r.Votes) == 0 {
			continue
		}
		switch r.State {
		case StateApproved, StateExecuted, StateEnded, StateRevoked:
			s.Approved++
		case StateDenied:
			s.Denied++
		}
		if !r.DecidedAt.IsZero() {
			decisions = append(decisions, r.DecidedAt.Sub(r.CreatedAt).Seconds())
		}
	}
	if blocks > 0 {
		s.BreakGlassPerBlock = float64(s.BreakGlass) / float64(blocks)
	}
	if s.Approved+s.Denied > 0 {
		s.ApproveRatio = float64(s.Approved) / float64(s.Approved+s.Denied)
	}
	if len(decisions) > 0 {
		slices.Sort(decisions)
		s.DecisionP50 = decisions[len(decisions)/2]
		s.DecisionP90 = decisions[min(len(decisions)-1, len(decisions)*9/10)]
	}
	if s.Ended > 0 {
		s.ReviewedInSLAShare = float64(s.ReviewedInSLA) / float64(s.Ended)
	}
	for p, n := range s.ByPolicy {
		if n >= 2 {
			s.PolicyChangeCandidates = append(s.PolicyChangeCandidates, p)
		}
	}
	sort.Strings(s.PolicyChangeCandidates)
	return s, nil
}
