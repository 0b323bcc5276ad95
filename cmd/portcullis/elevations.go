package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/human"
)

type elevationView struct {
	approvalView
	NotAfter time.Time `json:"not_after"`
	Artifact struct {
		Role     string        `json:"role"`
		Resource string        `json:"resource"`
		Duration time.Duration `json:"duration"`
		Reason   string        `json:"reason"`
		Ticket   string        `json:"ticket"`
		Grants   []struct {
			Resources []string `json:"resources"`
			Actions   []string `json:"actions"`
		} `json:"grants"`
	} `json:"artifact"`
}

// scope says what a grant covers: "write on orders".
func (e *elevationView) scope() string {
	var parts []string
	for _, g := range e.Artifact.Grants {
		parts = append(parts, strings.Join(g.Actions, ",")+" on "+strings.Join(g.Resources, ","))
	}
	if len(parts) == 0 {
		return e.Artifact.Resource
	}
	return strings.Join(parts, "; ")
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
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s for %s, %s (%s)\n", v.ID, v.Artifact.Role, human.Duration(v.Artifact.Duration), v.State, v.progress())
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
		Short: "List your elevations and break-glass sessions (everyone's for audit readers)",
		Long: "Elevations lists your elevation requests and grants and your break-glass sessions,\n" +
			"newest first; break-glass ones are marked BREAK-GLASS. Audit readers see everyone's.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var els struct{ Elevations []elevationView }
			if err := c.do(http.MethodGet, "/elevations", nil, &els); err != nil {
				return err
			}
			var bgs struct{ BreakGlass []elevationView }
			if err := c.do(http.MethodGet, "/breakglass", nil, &bgs); err != nil {
				return err
			}
			all := append(bgs.BreakGlass, els.Elevations...)
			slices.SortStableFunc(all, func(a, b elevationView) int { return b.CreatedAt.Compare(a.CreatedAt) })
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTYPE\tSTATE\tREQUESTER\tROLE\tSCOPE\tUNTIL\tREASON")
			now := time.Now()
			for _, e := range all {
				typ, role, state := "elevation", e.Artifact.Role, e.State
				if e.Type == "breakglass" {
					typ, role = "BREAK-GLASS", "-"
				}
				until := "-"
				if !e.NotAfter.IsZero() {
					until = e.NotAfter.Local().Format(time.DateTime)
					if state == "approved" && now.Before(e.NotAfter) {
						state = "active"
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, typ, state, e.Requester.User, role, e.scope(), until, e.Artifact.Reason)
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
