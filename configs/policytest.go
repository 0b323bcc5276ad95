package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/portcullis/portcullis/policy"
)

// Suite is a file of policy unit tests: the configuration they run against and the cases.
type Suite struct {
	// Config is the configuration file, relative to the suite file.
	Config string        `yaml:"config"`
	Cases  []policy.Case `yaml:"cases"`

	// Path is the suite file.
	Path  string `yaml:"-"`
	lines []int
}

// Line returns the line where case i starts.
func (s *Suite) Line(i int) int { return s.lines[i] }

// ConfigPath returns the suite's configuration file resolved against the suite's directory.
func (s *Suite) ConfigPath() string {
	if s.Config == "" || filepath.IsAbs(s.Config) {
		return s.Config
	}
	return filepath.Join(filepath.Dir(s.Path), s.Config)
}

// LoadSuites reads every *.yaml and *.yml file below dir (or the file dir names) as a test
// suite, strictly, in name order.
func LoadSuites(dir string) ([]*Suite, error) {
	var files []string
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		files = []string{dir}
	} else {
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (filepath.Ext(p) == ".yaml" || filepath.Ext(p) == ".yml") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no test suites (*.yaml)", dir)
	}
	errs := &Error{}
	var suites []*Suite
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs, nodes := decodeStrict[Suite](f, data, errs)
		for i := range docs {
			s := &docs[i]
			s.Path = f
			o := origin{file: f, node: nodes[i]}
			for j := range s.Cases {
				s.lines = append(s.lines, o.line("cases", j))
			}
			suites = append(suites, s)
		}
	}
	return suites, errs.orNil()
}

// CaseSubject returns the subject of a test case's request: a static identity of c
// named by As, or the written-out Subject with its teams and roles resolved from c, plus
// any extra Roles.
func (c *Config) CaseSubject(r *policy.CaseRequest) (*policy.Subject, error) {
	var s *policy.Subject
	switch {
	case r.As != "" && r.Subject != nil:
		return nil, fmt.Errorf("request: give as or subject, not both")
	case r.As != "":
		var ok bool
		if s, ok = c.StaticSubject(r.As); !ok {
			return nil, fmt.Errorf("request.as: no static identity %q in %s", r.As, c.Path)
		}
	case r.Subject != nil:
		s = c.Subject(r.Subject.User, r.Subject.Email, r.Subject.Groups)
		for _, t := range r.Subject.Teams {
			if !s.InTeam(t) {
				s.Teams = append(s.Teams, t)
			}
		}
		s.Roles = append(s.Roles, r.Subject.Roles...)
	default:
		return nil, fmt.Errorf("request: as or subject is required")
	}
	s.Roles = append(s.Roles, r.Roles...)
	return s, nil
}

// CaseVoters returns the approvers of each of a test case's votes, resolved as CaseSubject
// resolves its request's subject.
func (c *Config) CaseVoters(x *policy.Expectation) ([][]*policy.Subject, error) {
	out := make([][]*policy.Subject, len(x.Votes))
	for i, v := range x.Votes {
		for j, a := range v.Approvers {
			s, err := c.CaseSubject(&policy.CaseRequest{As: a.As, Subject: a.Subject, Roles: a.Roles})
			if err != nil {
				return nil, fmt.Errorf("expect.votes[%d].approvers[%d]: %w", i, j, err)
			}
			out[i] = append(out[i], s)
		}
	}
	return out, nil
}
