package policy

// Policy is one policy document as written in YAML. Compile validates it and turns it into
// a Rule; the fields stay close to what users write so that errors can point at them.
type Policy struct {
	Name        string      `yaml:"name" json:"name"`
	Description string      `yaml:"description" json:"description,omitempty"`
	Tier        string      `yaml:"tier" json:"tier,omitempty"`
	Match       Match       `yaml:"match" json:"match"`
	When        string      `yaml:"when" json:"when,omitempty"`
	Schedule    *Schedule   `yaml:"schedule" json:"schedule,omitempty"`
	Effect      string      `yaml:"effect" json:"effect"`
	Quorum      *QuorumSpec `yaml:"quorum" json:"quorum,omitempty"`
}

// Match selects the requests a policy applies to. Each list matches if it is empty or if
// any of its entries matches; a policy applies when resources, actions and principals all
// match and the subject is not one of Except.
type Match struct {
	Resources ResourceSelector `yaml:"resources" json:"resources"`
	Actions   []string         `yaml:"actions" json:"actions,omitempty"`
	// Methods and Paths narrow a policy to HTTP requests (resources of kind http): the
	// request's method is one of Methods, and its path fits one of Paths, whose segments
	// are literals, * or {name} (one segment) or ** (any number). A policy with either
	// never matches a request without a method or path (a SQL statement).
	Methods []string `yaml:"methods" json:"methods,omitempty"`
	Paths   []string `yaml:"paths" json:"paths,omitempty"`
	// Kubernetes narrows a policy to Kubernetes API requests: namespaces, resources, names, verbs.
	Kubernetes *KubeMatch `yaml:"kubernetes" json:"kubernetes,omitempty"`
	Principals Principals `yaml:"principals" json:"principals"`
	Except     Principals `yaml:"except" json:"except"`
}

// ResourceSelector selects configured resources by name, kind and labels. Names and kinds
// are alternatives; every listed label must be present with that value ("*" for any value).
type ResourceSelector struct {
	Names  []string          `yaml:"names" json:"names,omitempty"`
	Kinds  []string          `yaml:"kinds" json:"kinds,omitempty"`
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
}

// Principals selects subjects by user, identity-provider group, team or role. A subject
// matches if it matches any entry; an empty Principals matches everyone.
type Principals struct {
	Users  []string `yaml:"users" json:"users,omitempty"`
	Groups []string `yaml:"groups" json:"groups,omitempty"`
	Teams  []string `yaml:"teams" json:"teams,omitempty"`
	Roles  []string `yaml:"roles" json:"roles,omitempty"`
}

func (p *Principals) empty() bool {
	return len(p.Users)+len(p.Groups)+len(p.Teams)+len(p.Roles) == 0
}

// Matches reports whether s is one of the principals. An empty Principals matches anyone.
func (p *Principals) Matches(s *Subject) bool {
	if p.empty() {
		return true
	}
	return p.matchesAny(s)
}

// Names reports whether s is one of the principals. Unlike Matches, which selects everyone
// when the list is empty, an empty Principals names nobody: use it for who may do something
// (review, read everything, approve).
func (p *Principals) Names(s *Subject) bool { return p.matchesAny(s) }

func (p *Principals) matchesAny(s *Subject) bool {
	if s == nil {
		return false
	}
	for _, u := range p.Users {
		if u == s.User {
			return true
		}
	}
	for _, g := range p.Groups {
		if s.InGroup(g) {
			return true
		}
	}
	for _, t := range p.Teams {
		if s.InTeam(t) {
			return true
		}
	}
	for _, r := range p.Roles {
		if s.HasRole(r) {
			return true
		}
	}
	return false
}

// QuorumSpec is the approval rule of a require_approval policy as written. Approvers lists
// who may approve; when empty, the users, teams and roles named by the required terms may,
// and when those are empty too, anyone but the requester may.
type QuorumSpec struct {
	MinApprovals        int        `yaml:"min_approvals" json:"min_approvals,omitempty"`
	MinDistinctTeams    int        `yaml:"min_distinct_teams" json:"min_distinct_teams,omitempty"`
	RequiredUsers       []string   `yaml:"required_users" json:"required_users,omitempty"`
	RequiredTeams       []string   `yaml:"required_teams" json:"required_teams,omitempty"`
	RequiredRoles       []string   `yaml:"required_roles" json:"required_roles,omitempty"`
	Approvers           Principals `yaml:"approvers" json:"approvers"`
	RequesterCanApprove bool       `yaml:"requester_can_approve" json:"requester_can_approve,omitempty"`
	RequireReason       bool       `yaml:"require_reason" json:"require_reason,omitempty"`
	Timeout             string     `yaml:"timeout" json:"timeout,omitempty"`
}

// Defaults says what happens when no policy matches a request. Each value is allow or deny;
// empty means the built-in default: deny for production resources, allow for the rest.
type Defaults struct {
	Effect           string `yaml:"effect" json:"effect,omitempty"`
	ProductionEffect string `yaml:"production_effect" json:"production_effect,omitempty"`
}

// IsProduction reports whether a resource is labelled as production (env: production).
func (r *Resource) IsProduction() bool { return r.Labels["env"] == "production" }
