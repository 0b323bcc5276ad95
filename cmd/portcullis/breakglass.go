package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

func breakGlassCmd() *cobra.Command {
	var c apiClient
	var scope, dur, incident, reason string
	cmd := &cobra.Command{
		Use:   "breakglass --scope RESOURCE[,RESOURCE]:ACTION[,ACTION] --for D --incident ID --reason TEXT",
		Short: "Open an emergency (break-glass) session",
		Long: "Breakglass opens scoped, time-bound emergency access: within the scope, statements\n" +
			"that policy would deny or hold for approval run, each one flagged in the audit log and\n" +
			"announced. Low and medium tiers are granted at once; high needs one other human; critical\n" +
			"two approvers from other teams. Every session is reviewed afterwards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, acts, ok := strings.Cut(scope, ":")
			if !ok || res == "" || acts == "" {
				return fmt.Errorf("--scope wants RESOURCES:ACTIONS, e.g. orders:write,ddl")
			}
			body := map[string]any{
				"scope":    map[string][]string{"resources": strings.Split(res, ","), "actions": strings.Split(acts, ",")},
				"duration": dur, "reason": reason, "incident": incident,
			}
			var v elevationView
			if err := c.do(http.MethodPost, "/breakglass", body, &v); err != nil {
				return err
			}
			until := ""
			if !v.NotAfter.IsZero() {
				until = " until " + v.NotAfter.Local().Format("15:04:05")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s%s (%s)\n", v.ID, v.State, until, v.progress())
			c.printLink(cmd.OutOrStdout(), &v)
			return nil
		},
	}
	addAPIFlags(cmd, &c)
	cmd.Flags().StringVar(&scope, "scope", "", "RESOURCES:ACTIONS, e.g. orders:write,ddl (required)")
	cmd.Flags().StringVar(&dur, "for", "30m", "duration (one of the configured durations)")
	cmd.Flags().StringVar(&incident, "incident", "", "incident reference (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.MarkFlagRequired("scope")
	return cmd
}
