package policy

import (
	"fmt"
	"strings"
)

// Decision is the outcome of evaluating one Request. A Decision is reused across calls to
// Evaluate to keep the allow path free of allocations; copy what must outlive the next call.
type Decision struct {
	// Effect is what happens to the request.
	Effect Effect
	// Matched lists every rule that matched, in policy order, whatever its effect.
	Matched []*Rule
	// Quorum is the combined approval rule when Effect is RequireApproval. It may be shared
	// with the Engine and must not be modified.
	Quorum *Quorum
	// Tier is the highest tier among the rules that produced Effect.
	Tier Tier
	// Snapshot is the policy snapshot hash of the Engine that decided.
	Snapshot string
	// Default is set when no policy matched and the resource's default applied.
	Default bool
	// Err is set when a condition could not be evaluated; the decision then failed closed
	// (the rule counted if it denies or asks for approval, and not if it allows).
	Err error

	reason string
}

func (d *Decision) reset(snapshot string) {
	matched := d.Matched[:0]
	*d = Decision{Matched: matched, Snapshot: snapshot}
}

// Deciding returns the matched rules whose effect is the decision's effect.
func (d *Decision) Deciding() []*Rule {
	var out []*Rule
	for _, r := range d.Matched {
		if r.Effect == d.Effect {
			out = append(out, r)
		}
	}
	return out
}

// RuleNames returns the names of every matched rule. The slice must not be modified: a
// decision that matched one rule returns that rule's own.
func (d *Decision) RuleNames() []string {
	if len(d.Matched) == 1 && d.Matched[0].names != nil {
		return d.Matched[0].names
	}
	names := make([]string, len(d.Matched))
	for i, r := range d.Matched {
		names[i] = r.Name
	}
	return names
}

// Reason returns a human-readable explanation of the decision, naming the policies that
// produced it.
func (d *Decision) Reason() string {
	reason := d.reason
	if reason == "" {
		var deciding []*Rule
		if len(d.Matched) == 1 && d.Matched[0].Effect == d.Effect {
			deciding = d.Matched // the usual case, without a new slice
		} else {
			deciding = d.Deciding()
		}
		switch len(deciding) {
		case 0:
			reason = d.Effect.String()
		case 1:
			reason = deciding[0].reason
		default:
			names := make([]string, len(deciding))
			for i, r := range deciding {
				names[i] = r.Name
			}
			verb := map[Effect]string{Allow: "allowed", Deny: "denied", RequireApproval: "approval required"}[d.Effect]
			reason = fmt.Sprintf("%s by policies %s", verb, strings.Join(names, ", "))
		}
	}
	if d.Err != nil {
		reason += " (failed closed: " + d.Err.Error() + ")"
	}
	return reason
}

// String returns the effect and reason.
func (d *Decision) String() string { return d.Effect.String() + ": " + d.Reason() }
