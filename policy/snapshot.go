package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
)

// snapshotHash hashes a normalized copy of the set: policies and resources sorted by name,
// string lists sorted, so that reordering documents or list entries keeps the hash.
func snapshotHash(set *Set) string {
	type doc struct {
		Version   int        `json:"v"`
		Defaults  Defaults   `json:"defaults"`
		Resources []Resource `json:"resources"`
		Policies  []Policy   `json:"policies"`
	}
	d := doc{Version: 1, Defaults: set.Defaults, Resources: slices.Clone(set.Resources), Policies: make([]Policy, len(set.Policies))}
	slices.SortFunc(d.Resources, func(a, b Resource) int { return strings.Compare(a.Name, b.Name) })
	for i, p := range set.Policies {
		p.Match.Actions = sortedCopy(p.Match.Actions)
		p.Match.Methods = sortedCopy(p.Match.Methods)
		p.Match.Paths = sortedCopy(p.Match.Paths)
		if k := p.Match.Kubernetes; k != nil {
			p.Match.Kubernetes = &KubeMatch{Namespaces: sortedCopy(k.Namespaces), Resources: sortedCopy(k.Resources), Names: sortedCopy(k.Names), Verbs: sortedCopy(k.Verbs)}
		}
		p.Match.Resources.Names = sortedCopy(p.Match.Resources.Names)
		p.Match.Resources.Kinds = sortedCopy(p.Match.Resources.Kinds)
		p.Match.Principals = normalizePrincipals(p.Match.Principals)
		p.Match.Except = normalizePrincipals(p.Match.Except)
		if p.Schedule != nil {
			s := *p.Schedule
			s.Weekdays = sortedCopy(s.Weekdays)
			p.Schedule = &s
		}
		if p.Quorum != nil {
			q := *p.Quorum
			q.RequiredUsers, q.RequiredTeams, q.RequiredRoles = sortedCopy(q.RequiredUsers), sortedCopy(q.RequiredTeams), sortedCopy(q.RequiredRoles)
			q.Approvers = normalizePrincipals(q.Approvers)
			p.Quorum = &q
		}
		d.Policies[i] = p
	}
	slices.SortFunc(d.Policies, func(a, b Policy) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.Marshal(d)
	if err != nil {
		panic("policy: cannot encode snapshot: " + err.Error()) // plain data; cannot happen
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func normalizePrincipals(p Principals) Principals {
	return Principals{Users: sortedCopy(p.Users), Groups: sortedCopy(p.Groups), Teams: sortedCopy(p.Teams), Roles: sortedCopy(p.Roles)}
}
