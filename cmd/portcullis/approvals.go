package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// apiClient talks to a Portcullis server's API with a bearer token.
type apiClient struct {
	server, token string
	http          *http.Client
}

func addAPIFlags(cmd *cobra.Command, c *apiClient) {
	addServerFlag(cmd, &c.server)
	cmd.Flags().StringVar(&c.token, "token", "", "access token (default $PORTCULLIS_TOKEN, then the token of portcullis login)")
}

// addServerFlag adds --server, the Portcullis server to talk to.
func addServerFlag(cmd *cobra.Command, server *string) {
	cmd.Flags().StringVar(server, "server", envOr("PORTCULLIS_URL", "http://127.0.0.1:8080"), "Portcullis server URL ($PORTCULLIS_URL)")
}

// printLink prints, for a request still waiting for approvers, the console page they
// approve it on.
func (c *apiClient) printLink(w io.Writer, v *elevationView) {
	if v.State == "pending" {
		fmt.Fprintf(w, "  approvers: %s/requests/%s\n", strings.TrimRight(c.server, "/"), url.PathEscape(v.ID))
	}
}

func (c *apiClient) do(method, path string, body, out any) error {
	tok := c.token
	if tok == "" {
		tok = os.Getenv("PORTCULLIS_TOKEN")
	}
	if tok == "" {
		if t, ok := cachedFor(c.server, time.Now()); ok {
			tok = t.IDToken
		}
	}
	if tok == "" {
		return fmt.Errorf("no token: run portcullis login, pass --token or set PORTCULLIS_TOKEN")
	}
	return c.send(method, path, tok, body, out)
}

// send makes one API call, with the token when one is given (public endpoints need none).
func (c *apiClient) send(method, path, tok string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.server, "/")+"/api/v1"+path, rd)
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("could not reach %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		json.Unmarshal(raw, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
	}
	return json.Unmarshal(raw, out)
}

type approvalView struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	State     string    `json:"state"`
	Status    string    `json:"status"` // the state as people read it: failed, never ran, ...
	Note      string    `json:"status_note"`
	Waiting   string    `json:"waiting"`
	CreatedAt time.Time `json:"created_at"`
	Requester struct {
		User string `json:"user"`
	} `json:"requester"`
	Artifact struct {
		Resource  string `json:"resource"`
		Statement string `json:"statement"`
		Class     string `json:"class"`
	} `json:"artifact"`
	Progress struct {
		Terms []struct {
			Name       string `json:"name"`
			Have, Need int
		} `json:"terms"`
	} `json:"progress"`
	CanApprove bool   `json:"can_approve"`
	WhyNot     string `json:"why_not"`
}

// status is the request's status with its note: "failed (42501: permission denied ...)".
func (v *approvalView) status() string {
	s := v.Status
	if s == "" {
		s = v.State
	}
	if v.Note != "" {
		note := v.Note
		if len(note) > 60 {
			note = note[:57] + "..."
		}
		s += " (" + note + ")"
	}
	return s
}

func (v *approvalView) progress() string {
	var parts []string
	for _, t := range v.Progress.Terms {
		mark := ""
		if t.Have >= t.Need {
			mark = " ✓"
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d%s", t.Name, t.Have, t.Need, mark))
	}
	return strings.Join(parts, ", ")
}

func approvalsCmd() *cobra.Command {
	var c apiClient
	var state string
	cmd := &cobra.Command{Use: "approvals", Short: "List approval requests"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the approval requests you may see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct{ Approvals []approvalView }
			if err := c.do(http.MethodGet, "/approvals?state="+state, nil, &out); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATUS\tREQUESTER\tRESOURCE\tCLASS\tPROGRESS\tYOU\tSTATEMENT")
			for _, a := range out.Approvals {
				you := "can approve"
				if !a.CanApprove {
					you = "-"
				}
				stmt := strings.Join(strings.Fields(a.Artifact.Statement), " ")
				if len(stmt) > 60 {
					stmt = stmt[:57] + "..."
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.status(), a.Requester.User, a.Artifact.Resource, a.Artifact.Class, a.progress(), you, stmt)
			}
			return w.Flush()
		},
	}
	addAPIFlags(list, &c)
	list.Flags().StringVar(&state, "state", "pending", "pending, approved, denied, expired or all")
	cmd.AddCommand(list)
	return cmd
}

func decideCmd(approve bool) *cobra.Command {
	var c apiClient
	var comment string
	verb, use := "approve", "approve ID"
	if !approve {
		verb, use = "deny", "deny ID"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " an approval request",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v approvalView
			if err := c.do(http.MethodPost, "/approvals/"+args[0]+"/"+verb, map[string]string{"comment": comment}, &v); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s)\n", v.ID, v.State, v.progress())
			return nil
		},
	}
	addAPIFlags(cmd, &c)
	cmd.Flags().StringVarP(&comment, "comment", "m", "", "comment (required when the policy says so)")
	return cmd
}
