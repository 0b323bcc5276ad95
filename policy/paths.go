package policy

import (
	"fmt"
	"strings"
)

// pathPattern is a compiled match.paths entry: segments separated by "/", each a literal,
// "*" or "{name}" for exactly one non-empty segment, or "**" for any number of segments
// (none included).
type pathPattern struct {
	src  string
	segs []string
}

func compilePath(p string) (pathPattern, error) {
	if !strings.HasPrefix(p, "/") {
		return pathPattern{}, fmt.Errorf("path pattern %q must start with /", p)
	}
	segs := strings.Split(p[1:], "/")
	for _, s := range segs {
		switch {
		case s == "*" || s == "**":
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) > 2 && !strings.ContainsAny(s[1:len(s)-1], "{}*"):
		case strings.ContainsAny(s, "*{}"):
			return pathPattern{}, fmt.Errorf("path pattern %q: a segment is a literal, *, ** or {name}, not %q", p, s)
		}
	}
	return pathPattern{src: p, segs: segs}, nil
}

// matches reports whether the request path (as sent, starting with /) fits the pattern.
func (p pathPattern) matches(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	return matchSegs(p.segs, strings.Split(path[1:], "/"))
}

func matchSegs(pat, segs []string) bool {
	for len(pat) > 0 {
		switch p := pat[0]; {
		case p == "**":
			rest := pat[1:]
			for i := 0; i <= len(segs); i++ {
				if matchSegs(rest, segs[i:]) {
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
		case p != segs[0]:
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
