package policy

import "time"

// Subject is who asks: the identity a front end resolved from a token, with the teams and
// roles configuration gives it. Roles holds org roles and active elevation grants alike.
type Subject struct {
	User   string   `cel:"user" json:"user" yaml:"user"`
	Email  string   `cel:"email" json:"email,omitempty" yaml:"email"`
	Groups []string `cel:"groups" json:"groups,omitempty" yaml:"groups"`
	Teams  []string `cel:"teams" json:"teams,omitempty" yaml:"teams"`
	Roles  []string `cel:"roles" json:"roles,omitempty" yaml:"roles"`
}

// InTeam reports whether the subject is a member of team.
func (s *Subject) InTeam(team string) bool { return contains(s.Teams, team) }

// HasRole reports whether the subject holds role.
func (s *Subject) HasRole(role string) bool { return contains(s.Roles, role) }

// InGroup reports whether the subject's identity provider put it in group.
func (s *Subject) InGroup(group string) bool { return contains(s.Groups, group) }

// Resource is a configured upstream that requests address by name.
type Resource struct {
	Name   string            `cel:"name" json:"name" yaml:"name"`
	Kind   string            `cel:"kind" json:"kind" yaml:"kind"`
	Labels map[string]string `cel:"labels" json:"labels,omitempty" yaml:"labels"`
	// DefaultEffect applies when no policy matches; empty means the Set's default for the
	// resource (see Defaults).
	DefaultEffect string `cel:"-" json:"default_effect,omitempty" yaml:"default_effect"`
}

// Action is what the request does, as the front end classified it. Fields that do not apply
// to a front end stay empty; EstimatedRows is -1 when nobody estimated it.
type Action struct {
	Class          Class    `cel:"-" json:"class" yaml:"class"`
	Kind           string   `cel:"kind" json:"kind,omitempty" yaml:"kind"`
	Statement      string   `cel:"statement" json:"statement,omitempty" yaml:"statement"`
	Tables         []string `cel:"tables" json:"tables,omitempty" yaml:"tables"`
	Schemas        []string `cel:"schemas" json:"schemas,omitempty" yaml:"schemas"`
	Functions      []string `cel:"functions" json:"functions,omitempty" yaml:"functions"`
	EstimatedRows  int64    `cel:"estimated_rows" json:"estimated_rows" yaml:"estimated_rows"`
	MultiStatement bool     `cel:"multi_statement" json:"multi_statement,omitempty" yaml:"multi_statement"`
	InTransaction  bool     `cel:"in_transaction" json:"in_transaction,omitempty" yaml:"in_transaction"`
	Method         string   `cel:"method" json:"method,omitempty" yaml:"method"`
	Path           string   `cel:"path" json:"path,omitempty" yaml:"path"`
	Namespace      string   `cel:"namespace" json:"namespace,omitempty" yaml:"namespace"`
}

// Request is one thing to decide: who, on which resource, does what, when.
type Request struct {
	Subject  *Subject
	Resource string
	Action   *Action
	Time     time.Time
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
