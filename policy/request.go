package policy

import "time"

// Subject is who asks: the identity a front end resolved from a token, with the teams and
// roles configuration gives it. Roles holds org roles and active elevation grants alike.
type Subject struct {
	User   string   `cel:"user" json:"user"`
	Email  string   `cel:"email" json:"email,omitempty"`
	Groups []string `cel:"groups" json:"groups,omitempty"`
	Teams  []string `cel:"teams" json:"teams,omitempty"`
	Roles  []string `cel:"roles" json:"roles,omitempty"`
}

// InTeam reports whether the subject is a member of team.
func (s *Subject) InTeam(team string) bool { return contains(s.Teams, team) }

// HasRole reports whether the subject holds role.
func (s *Subject) HasRole(role string) bool { return contains(s.Roles, role) }

// InGroup reports whether the subject's identity provider put it in group.
func (s *Subject) InGroup(group string) bool { return contains(s.Groups, group) }

// Resource is a configured upstream that requests address by name.
type Resource struct {
	Name   string            `cel:"name" json:"name"`
	Kind   string            `cel:"kind" json:"kind"`
	Labels map[string]string `cel:"labels" json:"labels,omitempty"`
	// DefaultEffect applies when no policy matches; empty means the Set's default for the
	// resource (see Defaults).
	DefaultEffect string `cel:"-" json:"default_effect,omitempty"`
}

// Action is what the request does, as the front end classified it. Fields that do not apply
// to a front end stay empty; EstimatedRows is -1 when nobody estimated it.
type Action struct {
	Class          Class    `json:"class"`
	Kind           string   `cel:"kind" json:"kind,omitempty"`
	Statement      string   `cel:"statement" json:"statement,omitempty"`
	Tables         []string `cel:"tables" json:"tables,omitempty"`
	Schemas        []string `cel:"schemas" json:"schemas,omitempty"`
	Functions      []string `cel:"functions" json:"functions,omitempty"`
	EstimatedRows  int64    `cel:"estimated_rows" json:"estimated_rows"`
	MultiStatement bool     `cel:"multi_statement" json:"multi_statement,omitempty"`
	InTransaction  bool     `cel:"in_transaction" json:"in_transaction,omitempty"`
	Method         string   `cel:"method" json:"method,omitempty"`
	Path           string   `cel:"path" json:"path,omitempty"`
	Namespace      string   `cel:"namespace" json:"namespace,omitempty"`
	// Kube is a Kubernetes API request's attributes.
	Kube *KubeRequest `json:"kube,omitempty"`
	// HTTP is the rest of an HTTP request, for conditions (request.query, .headers, .body).
	HTTP *HTTPRequest `json:"-"`
}

// HTTPRequest is what conditions see of an HTTP request besides its method and path.
type HTTPRequest struct {
	// RawQuery is the query string as sent (conditions see it decoded).
	RawQuery string
	// Header holds the request's headers as forwarded (the caller's credentials are
	// never among them).
	Header map[string][]string
	// ContentType is the media type of Body, without parameters.
	ContentType string
	// Body is the request body; conditions see it parsed when it is JSON of at most
	// MaxCELBody bytes.
	Body []byte
}

// MaxCELBody bounds the JSON bodies conditions see (larger ones are null to them).
const MaxCELBody = 256 << 10

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
