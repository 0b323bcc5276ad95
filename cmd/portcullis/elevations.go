package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

type elevationView struct {
	approvalView
	NotAfter time.Time `json:"not_after"`
	Artifact struct {
		Role     string        `json:"role"`
		Resource string        `json:"resource"`
		Duration time.Duration `json:"duration"`
		Reason   string        `json:"reason"`
	} `json:"artifact"`
}

func requestCmd() *cobra.Command {
	var c apiClient
	var dur, reason, ticket string
	cmd := &cobra.Command{
		Use:   "request ROLE --for DURATION --reason TEXT",
		Short: "Ask for an elevation role for a time",
		Long: "Request asks for an elevation role (see `roles` in the configuration) for one of the\n" +
			"durations the role offers. The request joins the approvals queue; once its quorum\n" +
			"approves, policy sees the role on you until the grant ends.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v elevationView
			body := map[string]string{"role": args[0], "duration": dur, "reason": reason, "ticket": ticket}
			if err := c.do(http.MethodPost, "/elevations", body, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s for %s, %s (%s)\n", v.ID, v.Artifact.Role, v.Artifact.Duration, v.State, v.progress())
			c.printLink(cmd.OutOrStdout(), &v)
			return nil
		},
	}
	addAPIFlags(cmd, &c)
	cmd.Flags().StringVar(&dur, "for", "1h", "how long (one of the role's durations)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required when the role says so)")
	cmd.Flags().StringVar(&ticket, "ticket", "", "ticket or incident reference")
	return cmd
}

func elevationsCmd() *cobra.Command {
	var c apiClient
	cmd := &cobra.Command{
		Use:   "elevations",
		Short: "List your elevation requests and grants (everyone's for audit readers)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct{ Elevations []elevationView }
			if err := c.do(http.MethodGet, "/elevations", nil, &out); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATE\tREQUESTER\tROLE\tRESOURCES\tUNTIL\tREASON")
			for _, e := range out.Elevations {
				until := "-"
				if !e.NotAfter.IsZero() {
					until = e.NotAfter.Local().Format(time.DateTime)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.State, e.Requester.User, e.Artifact.Role, e.Artifact.Resource, until, e.Artifact.Reason)
			}
			return w.Flush()
		},
	}
	addAPIFlags(cmd, &c)
	return cmd
}

func revokeCmd() *cobra.Command {
	var c apiClient
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "End an elevation grant early (or withdraw its request)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v elevationView
			if err := c.do(http.MethodDelete, "/elevations/"+args[0], nil, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", v.ID, v.State)
			return nil
		},
	}
	addAPIFlags(cmd, &c)
	return cmd
}
