package configs

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, at a place in a file.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Error lists every problem found in a configuration. Load returns it, never a partial
// configuration.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (e *Error) add(file string, line int, format string, args ...any) {
	e.Problems = append(e.Problems, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (e *Error) orNil() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// addYAML records an error from the YAML decoder, which puts line numbers in its messages.
func (e *Error) addYAML(file string, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if m := yamlLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			e.add(file, n, "%s", m[2])
			continue
		}
		e.add(file, 0, "%s", strings.TrimPrefix(l, "yaml: "))
	}
}
