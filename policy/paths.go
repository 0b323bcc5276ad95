package policy

import (
	"fmt"
	"strings"
)

// PathPattern is a compiled path pattern (a policy's match.paths, an http resource's
// classes): segments separated by "/", each a literal, "*" or "{name}" for exactly one
// non-empty segment, or "**" for any number of segments (none included).
type PathPattern struct {
	src  string
	segs []string
}

// CompilePath compiles a path pattern.
func CompilePath(p string) (PathPattern, error) {
	if !strings.HasPrefix(p, "/") {
		return PathPattern{}, fmt.Errorf("path pattern %q must start with /", p)
	}
	segs := strings.Split(p[1:], "/")
	for _, s := range segs {
		switch {
		case s == "*" || s == "**":
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) > 2 && !strings.ContainsAny(s[1:len(s)-1], "{}*"):
		case strings.ContainsAny(s, "*{}"):
			return PathPattern{}, fmt.Errorf("path pattern %q: a segment is a literal, *, ** or {name}, not %q", p, s)
		}
	}
	return PathPattern{src: p, segs: segs}, nil
}

// String returns the pattern as written.
func (p PathPattern) String() string { return p.src }

// Match reports whether the request path (decoded, starting with /) fits the pattern.
func (p PathPattern) Match(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	return matchSegs(p.segs, strings.Split(path[1:], "/"), nil)
}

// Params returns the values of the pattern's {name} segments in path, and whether path
// fits the pattern at all. Where "**" makes the fit ambiguous, the shortest "**" wins.
func (p PathPattern) Params(path string) (map[string]string, bool) {
	if !strings.HasPrefix(path, "/") {
		return nil, false
	}
	params := map[string]string{}
	return params, matchSegs(p.segs, strings.Split(path[1:], "/"), params)
}

// matchSegs matches segs against pat, recording {name} segments in params when it is not
// nil (a failed branch's records are overwritten by the one that fits).
func matchSegs(pat, segs []string, params map[string]string) bool {
	for len(pat) > 0 {
		switch p := pat[0]; {
		case p == "**":
			rest := pat[1:]
			for i := 0; i <= len(segs); i++ {
				if matchSegs(rest, segs[i:], params) {
					return true
				}
			}
			return false
		case len(segs) == 0:
			return false
		case p == "*" || strings.HasPrefix(p, "{"):
			if segs[0] == "" {
				return false
			}
			if params != nil && p != "*" {
				params[p[1:len(p)-1]] = segs[0]
			}
		case p != segs[0]:
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
