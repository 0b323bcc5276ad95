package configs

import (
	"slices"

	"github.com/portcullis/portcullis/policy"
)

// Subject returns the policy subject for a user the identity provider vouched for: the
// teams whose users or groups include it, and the org roles it holds directly, through a
// group or through a team.
func (c *Config) Subject(user, email string, groups []string) *policy.Subject {
	s := &policy.Subject{User: user, Email: email, Groups: slices.Clone(groups)}
	member := func(users, grps []string) bool {
		if slices.Contains(users, user) || (email != "" && slices.Contains(users, email)) {
			return true
		}
		for _, g := range grps {
			if slices.Contains(groups, g) {
				return true
			}
		}
		return false
	}
	for _, t := range c.Teams {
		if member(t.Users, t.Groups) {
			s.Teams = append(s.Teams, t.Name)
		}
	}
	for _, r := range c.OrgRoles {
		if member(r.Users, r.Groups) || slices.ContainsFunc(r.Teams, s.InTeam) {
			s.Roles = append(s.Roles, r.Name)
		}
	}
	return s
}

// StaticSubject returns the subject of the static-token identity named name.
func (c *Config) StaticSubject(name string) (*policy.Subject, bool) {
	for _, t := range c.Identity.StaticTokens {
		if t.Subject == name {
			return c.Subject(t.Subject, t.Email, t.Groups), true
		}
	}
	return nil, false
}

// Members returns the users the configuration knows to be among p (named in it, in a team
// or org role, or given a static token), and the identity-provider groups whose every
// member is, which the configuration cannot list.
func (c *Config) Members(p policy.Principals) (users, groups []string) {
	var known []string
	add := func(names ...string) {
		for _, n := range names {
			if n != "" && !slices.Contains(known, n) {
				known = append(known, n)
			}
		}
	}
	add(p.Users...)
	for _, t := range c.Teams {
		add(t.Users...)
	}
	for _, r := range c.OrgRoles {
		add(r.Users...)
	}
	for _, t := range c.Identity.StaticTokens {
		add(t.Subject)
	}
	for _, u := range known {
		s, ok := c.StaticSubject(u)
		if !ok {
			s = c.Subject(u, "", nil)
		}
		if p.Names(s) {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	groups = slices.Clone(p.Groups)
	for _, t := range c.Teams {
		if slices.Contains(p.Teams, t.Name) {
			groups = append(groups, t.Groups...)
		}
	}
	for _, r := range c.OrgRoles {
		if slices.Contains(p.Roles, r.Name) {
			groups = append(groups, r.Groups...)
			for _, t := range c.Teams {
				if slices.Contains(r.Teams, t.Name) {
					groups = append(groups, t.Groups...)
				}
			}
		}
	}
	slices.Sort(groups)
	return users, slices.Compact(groups)
}
