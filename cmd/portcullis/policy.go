package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/human"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/httpfront"
)

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, test and explain policies",
	}
	cmd.AddCommand(policyCheckCmd(), policyTestCmd(), policyExplainCmd())
	return cmd
}

// loadForPolicy loads a configuration for the policy tools, which need no secrets: unset
// ${ENV} references are allowed. Problems are printed and turned into exit status 1.
func loadForPolicy(cmd *cobra.Command, path string) (*configs.Config, error) {
	cfg, err := configs.Load(path, configs.AllowUnsetEnv())
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), err)
		return nil, exitError{1}
	}
	return cfg, nil
}

func policyCheckCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a configuration and its policies",
		Long: "Check decodes the configuration strictly, validates it as a whole and compiles every\n" +
			"policy (CEL conditions are type-checked). Each problem is printed as FILE:LINE: message\n" +
			"and the command exits 1 if there is any. Unset ${ENV} references are allowed here.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadForPolicy(cmd, cfgPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %d policies, %d resources, %d roles; policy snapshot %s\n",
				cfgPath, len(cfg.Policies), len(cfg.Resources), len(cfg.Roles), cfg.Engine.Snapshot()[:16])
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	cmd.MarkFlagRequired("config")
	return cmd
}

func policyTestCmd() *cobra.Command {
	var cfgPath string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test DIR|FILE",
		Short: "Run policy unit tests written as YAML cases",
		Long: "Test runs every case in the YAML suites below DIR against the configuration each suite\n" +
			"names (or --config), prints PASS or FAIL per case with what differs, and exits 1 if any\n" +
			"case fails. See docs/policy.md for the case format.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			suites, err := configs.LoadSuites(args[0])
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			passed, failed := runSuites(cmd.OutOrStdout(), suites, cfgPath, verbose)
			fmt.Fprintf(cmd.OutOrStdout(), "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration to test against, instead of each suite's config")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print passing cases too")
	return cmd
}

func runSuites(w io.Writer, suites []*configs.Suite, override string, verbose bool) (passed, failed int) {
	loaded := map[string]*configs.Config{}
	for _, s := range suites {
		path := override
		if path == "" {
			path = s.ConfigPath()
		}
		if path == "" {
			fmt.Fprintf(w, "--- FAIL: %s: the suite names no config and --config was not given\n", s.Path)
			failed += len(s.Cases)
			continue
		}
		cfg, ok := loaded[path]
		if !ok {
			var err error
			if cfg, err = configs.Load(path, configs.AllowUnsetEnv()); err != nil {
				fmt.Fprintf(w, "--- FAIL: %s: configuration %s does not load:\n%s\n", s.Path, path, indent(err.Error()))
				failed += len(s.Cases)
				continue
			}
			loaded[path] = cfg
		}
		for i := range s.Cases {
			c := &s.Cases[i]
			var diffs []string
			var d *policy.Decision
			subject, err := cfg.CaseSubject(&c.Request)
			var voters [][]*policy.Subject
			if err == nil {
				voters, err = cfg.CaseVoters(&c.Expect)
			}
			if err != nil {
				diffs = []string{err.Error()}
			} else {
				d, diffs = cfg.Engine.Check(c, subject, voters)
			}
			if len(diffs) == 0 {
				passed++
				if verbose {
					fmt.Fprintf(w, "--- PASS: %s\n", c.Name)
				}
				continue
			}
			failed++
			fmt.Fprintf(w, "--- FAIL: %s (%s:%d)\n", c.Name, s.Path, s.Line(i))
			for _, l := range diffs {
				fmt.Fprintf(w, "        %s\n", l)
			}
			if d != nil {
				fmt.Fprintf(w, "        decision: %s\n", d.String())
			}
		}
	}
	return passed, failed
}

func indent(s string) string { return "        " + strings.ReplaceAll(s, "\n", "\n        ") }

func policyExplainCmd() *cobra.Command {
	var (
		cfgPath, as, resource, sql, action, at, req string
		tables                                      []string
		rows                                        int64
		roles                                       []string
	)
	cmd := &cobra.Command{
		Use:   "explain --config FILE --as USER --resource NAME (--sql STATEMENT | --action CLASS | --http 'METHOD /path')",
		Short: "Show the decision for one request and why",
		Long: "Explain evaluates one request against the configuration and prints the decision, every\n" +
			"matched policy with its effect and tier, the combined quorum and the policy snapshot.\n" +
			"USER is a static identity of the configuration. --sql classifies a statement with the\n" +
			"PostgreSQL parser; --http classifies a request to an http resource as the HTTP front end\n" +
			"does; --action gives the class directly (read, write, delete, ddl, admin, exec, unknown).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadForPolicy(cmd, cfgPath)
			if err != nil {
				return err
			}
			subject, err := cfg.CaseSubject(&policy.CaseRequest{As: as, Roles: roles})
			if err != nil {
				return err
			}
			var act *policy.Action
			switch {
			case (sql != "") && (action != "") || (sql != "" || action != "") && req != "":
				return fmt.Errorf("give one of --sql, --action and --http")
			case req != "":
				i := slices.IndexFunc(cfg.Resources, func(r configs.Resource) bool { return r.Name == resource && r.Kind == "http" })
				method, target, ok := strings.Cut(req, " ")
				u, err := url.ParseRequestURI(target)
				if !ok || err != nil || i < 0 {
					return fmt.Errorf(`--http: want "METHOD /path?query" on an http resource`)
				}
				if act, err = httpfront.ClassifyFor(&cfg.Resources[i], method, u); err != nil {
					return err
				}
			case sql != "":
				if act, err = classifySQL(sql); err != nil {
					return err
				}
			case action != "":
				c, err := policy.ParseClass(action)
				if err != nil {
					return err
				}
				act = &policy.Action{Class: c, Tables: tables, EstimatedRows: -1}
			default:
				return fmt.Errorf("give --sql, --action or --http")
			}
			if cmd.Flags().Changed("rows") {
				act.EstimatedRows = rows
			}
			when := time.Now()
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--time: %w", err)
				}
			}
			if cfg.Engine.Resource(resource) == nil {
				return fmt.Errorf("no resource %q in %s", resource, cfgPath)
			}
			var d policy.Decision
			cfg.Engine.Evaluate(&policy.Request{Subject: subject, Resource: resource, Action: act, Time: when}, &d)
			printExplanation(cmd.OutOrStdout(), subject, resource, act, &d)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	f.StringVar(&as, "as", "", "static identity to decide for (required)")
	f.StringVar(&resource, "resource", "", "resource name (required)")
	f.StringVar(&sql, "sql", "", "SQL statement to classify and decide")
	f.StringVar(&action, "action", "", "action class, instead of --sql")
	f.StringVar(&req, "http", "", `an HTTP request on an http resource, "METHOD /path?query", instead of --sql`)
	f.StringSliceVar(&tables, "table", nil, "tables the action touches (with --action)")
	f.Int64Var(&rows, "rows", -1, "estimated rows affected")
	f.StringSliceVar(&roles, "role", nil, "extra roles, as an active elevation grant would give")
	f.StringVar(&at, "time", "", "decide as of this RFC 3339 time (default now)")
	for _, name := range []string{"config", "as", "resource"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func printExplanation(w io.Writer, s *policy.Subject, resource string, a *policy.Action, d *policy.Decision) {
	fmt.Fprintf(w, "decision:  %s\n", d.Effect)
	fmt.Fprintf(w, "reason:    %s\n", d.Reason())
	fmt.Fprintf(w, "subject:   %s (teams %v, roles %v, groups %v)\n", s.User, s.Teams, s.Roles, s.Groups)
	fmt.Fprintf(w, "resource:  %s\n", resource)
	fmt.Fprintf(w, "action:    class %s", a.Class)
	if a.Kind != "" {
		fmt.Fprintf(w, ", %s", a.Kind)
	}
	if len(a.Tables) > 0 {
		fmt.Fprintf(w, ", tables %v", a.Tables)
	}
	if len(a.Functions) > 0 {
		fmt.Fprintf(w, ", functions %v", a.Functions)
	}
	if a.MultiStatement {
		fmt.Fprint(w, ", multi-statement")
	}
	if a.EstimatedRows >= 0 {
		fmt.Fprintf(w, ", ~%d rows", a.EstimatedRows)
	}
	fmt.Fprintln(w)
	if len(d.Matched) == 0 {
		fmt.Fprintln(w, "matched:   no policy (the resource's default applied)")
	} else {
		fmt.Fprintln(w, "matched:")
		for _, r := range d.Matched {
			fmt.Fprintf(w, "  - %s (%s, tier %s)", r.Name, r.Effect, r.Tier)
			if r.Description != "" {
				fmt.Fprintf(w, ": %s", r.Description)
			}
			fmt.Fprintln(w)
		}
	}
	if q := d.Quorum; q != nil {
		fmt.Fprintf(w, "quorum:    %d approval(s)", q.MinApprovals)
		if q.MinDistinctTeams > 0 {
			fmt.Fprintf(w, " from %d distinct teams", q.MinDistinctTeams)
		}
		for _, l := range []struct {
			n string
			v []string
		}{{"users", q.RequiredUsers}, {"teams", q.RequiredTeams}, {"roles", q.RequiredRoles}} {
			if len(l.v) > 0 {
				fmt.Fprintf(w, "; one from each of %s %v", l.n, l.v)
			}
		}
		fmt.Fprintf(w, "; requester may approve: %v; timeout %s\n", q.RequesterCanApprove, human.Duration(q.Timeout))
	}
	fmt.Fprintf(w, "snapshot:  %s\n", d.Snapshot)
}
