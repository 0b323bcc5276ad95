package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/policy"
)

// origin is where a decoded value came from: a file and the YAML node of the value.
type origin struct {
	file string
	node *yaml.Node
}

// line returns the line of the value at path below o, or of the deepest part of the path
// that exists.
func (o origin) line(path ...any) int {
	n := o.node
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		next := child(n, p)
		if next == nil {
			break
		}
		n = next
	}
	return n.Line
}

func child(n *yaml.Node, key any) *yaml.Node {
	switch k := key.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && k < len(n.Content) {
			return n.Content[k]
		}
	}
	return nil
}

// at returns the origin of the value at path below o.
func (o origin) at(path ...any) origin {
	n := o.node
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, p := range path {
		if n = child(n, p); n == nil {
			return origin{file: o.file, node: o.node}
		}
	}
	return origin{file: o.file, node: n}
}

// decodeStrict decodes every YAML document of data into a new T, refusing unknown keys,
// and returns the values with the node of each document.
func decodeStrict[T any](file string, data []byte, errs *Error) ([]T, []*yaml.Node) {
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	var out []T
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		if err := nodes.Decode(&doc); err != nil {
			if !errors.Is(err, io.EOF) {
				errs.addYAML(file, err)
			}
			return out, docs
		}
		var v T
		if err := strict.Decode(&v); err != nil {
			errs.addYAML(file, err)
			return out, docs
		}
		out = append(out, v)
		docs = append(docs, &doc)
	}
}

// Option changes how a configuration is loaded.
type Option func(*loader)

type loader struct {
	allowUnsetEnv bool
}

// AllowUnsetEnv lets ${NAME} references to unset variables expand to the empty string.
// The policy tools use it so that checking policies does not need deployment secrets;
// `portcullis serve` does not.
func AllowUnsetEnv() Option { return func(l *loader) { l.allowUnsetEnv = true } }

// Load reads, checks and compiles the configuration in path. It returns an *Error listing
// every problem, each with its file and line, when anything is wrong.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("could not read configuration: %w", err)
	}
	return Parse(path, data, opts...)
}

// Parse is Load for a configuration already in memory; path names it in errors and is
// the base for relative policy_files globs.
func Parse(path string, data []byte, opts ...Option) (*Config, error) {
	var ld loader
	for _, o := range opts {
		o(&ld)
	}
	errs := &Error{}
	cfgs, docs := decodeStrict[Config](path, data, errs)
	if len(errs.Problems) > 0 {
		return nil, errs
	}
	if len(cfgs) != 1 {
		errs.add(path, 0, "want exactly one YAML document, found %d", len(cfgs))
		return nil, errs
	}
	cfg := &cfgs[0]
	cfg.Path = path
	root := origin{file: path, node: docs[0]}
	expandEnv(reflect.ValueOf(cfg).Elem(), root, nil, ld.allowUnsetEnv, errs)

	// Every policy remembers where it was written, for errors.
	origins := make([]origin, len(cfg.Policies))
	for i := range cfg.Policies {
		origins[i] = root.at("policies", i)
	}
	for i, glob := range cfg.PolicyFiles {
		if !filepath.IsAbs(glob) {
			glob = filepath.Join(filepath.Dir(path), glob)
		}
		files, err := filepath.Glob(glob)
		if err != nil || len(files) == 0 {
			errs.add(path, root.line("policy_files", i), "policy_files: %q matches no file", cfg.PolicyFiles[i])
			continue
		}
		for _, f := range files {
			if same, _ := filepath.Match(filepath.Clean(path), filepath.Clean(f)); same {
				continue // a glob like *.yaml beside the configuration matches the configuration too
			}
			data, err := os.ReadFile(f)
			if err != nil {
				errs.add(f, 0, "could not read policy file: %v", err)
				continue
			}
			ps, pdocs := decodeStrict[policy.Policy](f, data, errs)
			for j := range ps {
				o := origin{file: f, node: pdocs[j]}
				expandEnv(reflect.ValueOf(&ps[j]).Elem(), o, nil, ld.allowUnsetEnv, errs)
				cfg.Policies = append(cfg.Policies, ps[j])
				origins = append(origins, o)
			}
		}
	}
	if len(errs.Problems) > 0 {
		return nil, errs
	}
	cfg.applyDefaults()
	cfg.validate(root, errs)
	cfg.compile(root, origins, errs)
	return cfg, errs.orNil()
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// expandEnv replaces ${NAME} and ${NAME:-default} in every string below v with the
// environment's value; $$ stands for a literal $. An unset variable without a default is
// a problem at its line unless allowUnset.
func expandEnv(v reflect.Value, o origin, path []any, allowUnset bool, errs *Error) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			expandEnv(v.Elem(), o, path, allowUnset, errs)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if !f.IsExported() || tag == "-" || tag == "" {
				continue
			}
			expandEnv(v.Field(i), o, append(slices.Clone(path), tag), allowUnset, errs)
		}
	case reflect.Slice:
		for i := range v.Len() {
			expandEnv(v.Index(i), o, append(slices.Clone(path), i), allowUnset, errs)
		}
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			s := v.MapIndex(k).String()
			if out, ok := expand(s, o, append(slices.Clone(path), k.String()), allowUnset, errs); ok {
				v.SetMapIndex(k, reflect.ValueOf(out).Convert(v.Type().Elem()))
			}
		}
	case reflect.String:
		if out, ok := expand(v.String(), o, path, allowUnset, errs); ok {
			v.SetString(out)
		}
	}
}

func expand(s string, o origin, path []any, allowUnset bool, errs *Error) (string, bool) {
	if !bytes.ContainsRune([]byte(s), '$') {
		return s, false
	}
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := envRef.FindStringSubmatch(m)
		if val, ok := os.LookupEnv(sub[1]); ok && val != "" {
			return val
		}
		if len(m) > len(sub[1])+3 { // has a :- default
			return sub[2]
		}
		if !allowUnset {
			errs.add(o.file, o.line(path...), "environment variable %s is not set", sub[1])
		}
		return ""
	})
	return out, true
}

// UnmarshalYAML decodes a Go duration string, reporting the line of a malformed one.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 30m, 1h or 4h30m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}
