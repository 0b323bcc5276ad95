package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the audit log",
	}
	cmd.AddCommand(auditVerifyCmd(), auditExportCmd())
	return cmd
}

// auditDir returns --dir, or the audit directory of --config.
func auditDir(dir, cfgPath string) (string, error) {
	switch {
	case dir != "":
		return dir, nil
	case cfgPath != "":
		cfg, err := configs.Load(cfgPath, configs.AllowUnsetEnv())
		if err != nil {
			return "", err
		}
		return cfg.Audit.Dir, nil
	}
	return "", errors.New("give --dir or --config")
}

func auditVerifyCmd() *cobra.Command {
	var dir, cfgPath string
	cmd := &cobra.Command{
		Use:   "verify --dir DIR",
		Short: "Recompute the audit log's hash chain",
		Long: "Verify reads every segment of the audit log, checks each event's hash and its link to\n" +
			"the event before, and exits 1 naming the first event that was edited, removed or\n" +
			"reordered, or the end of the log if events were cut off it. A directory holding the\n" +
			"logs of several replicas (one directory each, below it) has each chain verified.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := auditDir(dir, cfgPath)
			if err != nil {
				return err
			}
			if _, err := os.Stat(d); err != nil {
				return fmt.Errorf("no audit log at %s: %w", d, err)
			}
			// One chain per replica: the directory itself, or those under it.
			chains, err := audit.Chains(d)
			if err != nil {
				return err
			}
			if len(chains) == 0 {
				chains = []string{d} // an empty log: Verify says so
			}
			broken := false
			for _, c := range chains {
				s, err := audit.Verify(c)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "audit log %s is BROKEN: %v\n", c, err)
					broken = true
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "audit log %s is intact: %d events in %d segments, last hash %s\n", c, s.Events, s.Segments, s.LastHash)
			}
			if broken {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "audit log directory")
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "take the directory from this configuration")
	return cmd
}

func auditExportCmd() *cobra.Command {
	var dir, cfgPath, since, until string
	var f audit.Filter
	cmd := &cobra.Command{
		Use:   "export --dir DIR [filters]",
		Short: "Stream audit events as JSON lines",
		Long: "Export writes the events that pass the filters to standard output as JSON lines,\n" +
			"exactly as stored (with seq, prev_hash and hash). Times are RFC 3339 or a duration\n" +
			"back from now (--since 24h). The logs of several replicas below the directory are\n" +
			"merged by time, each replica's events in their chain's order (field replica).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := auditDir(dir, cfgPath)
			if err != nil {
				return err
			}
			if f.Since, err = parseWhen(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if f.Until, err = parseWhen(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			if _, err := audit.Export(d, f, cmd.OutOrStdout()); err != nil {
				return err
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "audit log directory")
	fl.StringVarP(&cfgPath, "config", "c", "", "take the directory from this configuration")
	fl.StringVar(&since, "since", "", "only events at or after this time")
	fl.StringVar(&until, "until", "", "only events before this time")
	fl.StringVar(&f.Actor, "actor", "", "only events by or about this user")
	fl.StringVar(&f.Resource, "resource", "", "only events on this resource")
	fl.StringVar(&f.Type, "type", "", "only events of this type")
	return cmd
}

func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}
