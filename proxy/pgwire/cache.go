package pgwire

import (
	"strings"
	"sync"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/pgsql"
)

// classCache remembers classifications by statement shape. Parsing costs tens of
// microseconds; statements that differ only in literal values (SELECT ... WHERE id = 7,
// = 8, ...) share a shape and so a classification, which depends on structure, never on
// literal values.
type classCache struct {
	mu  sync.RWMutex
	m   map[string]*policy.Action
	max int
}

func newClassCache(max int) *classCache {
	return &classCache{m: make(map[string]*policy.Action, 1024), max: max}
}

// classify returns the action of sql, from the cache when its shape was seen before.
// The returned Action is the caller's to keep; only its slices are shared.
func (c *classCache) classify(sql string) *policy.Action { return c.classifyInto(sql, nil, nil) }

// classifyWith is classify with a buffer for the shape key, kept by the caller across
// statements: a hit then allocates only the returned Action.
func (c *classCache) classifyWith(sql string, scratch *[]byte) *policy.Action {
	return c.classifyInto(sql, scratch, nil)
}

// classifyInto is classifyWith that, on a hit, writes the Action into dst (when not nil)
// and returns dst: a hit then allocates nothing.
func (c *classCache) classifyInto(sql string, scratch *[]byte, dst *policy.Action) *policy.Action {
	var buf []byte
	if scratch != nil {
		buf = (*scratch)[:0]
	}
	key, ok := appendShapeKey(buf, sql)
	if scratch != nil {
		*scratch = key[:0]
	}
	if ok {
		c.mu.RLock()
		a := c.m[string(key)] // a lookup by the bytes: no string is made
		c.mu.RUnlock()
		if a != nil {
			if dst == nil {
				dst = new(policy.Action)
			}
			*dst = *a
			dst.Statement = sql
			return dst
		}
	}
	a := pgsql.Classify(sql)
	if ok {
		cp := *a
		cp.Statement = ""
		c.mu.Lock()
		if len(c.m) >= c.max {
			clear(c.m)
		}
		c.m[string(key)] = &cp
		c.mu.Unlock()
	}
	return a
}

// shapeKey returns sql with numeric and plain string literals replaced by placeholders.
// It gives up (ok false) on anything it cannot tokenize with certainty — comments,
// dollar quoting, escape-string and prefixed literals, backslashes — so that two texts
// share a key only when they differ in nothing but literal values.
func shapeKey(sql string) (key string, ok bool) {
	b, ok := appendShapeKey(make([]byte, 0, len(sql)), sql)
	if !ok {
		return "", false
	}
	return string(b), true
}

// appendShapeKey appends sql's shape key (see shapeKey) to b.
func appendShapeKey(b []byte, sql string) ([]byte, bool) {
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		prevIdent := i > 0 && isIdent(sql[i-1])
		switch {
		case c == '\'':
			if prevIdent {
				return b, false // E'', B'', X'', U&'' and the like
			}
			j := i + 1
			for {
				if j >= n || sql[j] == '\\' {
					return b, false
				}
				if sql[j] == '\'' {
					if j+1 < n && sql[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			b = append(b, "'?'"...)
			i = j + 1
		case c >= '0' && c <= '9' && !prevIdent:
			j := i
			for j < n && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.') {
				j++
			}
			if j < n && (isIdent(sql[j]) || sql[j] == '\'') {
				return b, false // 1e5, 0x1F, 10abc
			}
			b = append(b, '?')
			i = j
		case c == '$':
			if prevIdent {
				b = append(b, c)
				i++
				continue
			}
			j := i + 1
			for j < n && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			if j == i+1 {
				return b, false // dollar quoting
			}
			b = append(b, sql[i:j]...) // a parameter, kept as it is
			i = j
		case c == '"':
			j := strings.IndexByte(sql[i+1:], '"')
			if j < 0 {
				return b, false
			}
			b = append(b, sql[i:i+j+2]...)
			i += j + 2
		case c == '-' && i+1 < n && sql[i+1] == '-', c == '/' && i+1 < n && sql[i+1] == '*', c == '\\':
			return b, false
		default:
			b = append(b, c)
			i++
		}
	}
	return b, true
}

func isIdent(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
