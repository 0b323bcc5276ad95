package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
)

// kubeCredentialCmd is the exec credential plugin kubectl (and every client-go tool) runs
// for a kubeconfig user that reaches Kubernetes through Portcullis: it prints an
// ExecCredential carrying the caller's Portcullis token — $PORTCULLIS_TOKEN when set (the
// demo's static tokens, automations), else the one `portcullis login` keeps, with its
// expiry so that the client asks again in time.
func kubeCredentialCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "kube-credential",
		Short: "Print the caller's token as a Kubernetes exec credential (kubectl runs this as its credential plugin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cred := clientauthv1.ExecCredential{TypeMeta: metav1.TypeMeta{APIVersion: execAPIVersion(), Kind: "ExecCredential"}}
			if tok := os.Getenv("PORTCULLIS_TOKEN"); tok != "" {
				cred.Status = &clientauthv1.ExecCredentialStatus{Token: tok}
			} else {
				t, err := keptToken(server)
				if err != nil {
					return fmt.Errorf("%w (or set PORTCULLIS_TOKEN)", err)
				}
				exp := metav1.NewTime(t.Expiry)
				cred.Status = &clientauthv1.ExecCredentialStatus{Token: t.IDToken, ExpirationTimestamp: &exp}
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(cred)
		},
	}
	addServerFlag(cmd, &server)
	return cmd
}

// execAPIVersion answers in the version the client asked for ($KUBERNETES_EXEC_INFO);
// client.authentication.k8s.io/v1 when it did not say.
func execAPIVersion() string {
	var info struct {
		APIVersion string `json:"apiVersion"`
	}
	if json.Unmarshal([]byte(os.Getenv("KUBERNETES_EXEC_INFO")), &info) == nil {
		switch info.APIVersion {
		case "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1":
			return info.APIVersion
		}
	}
	return "client.authentication.k8s.io/v1"
}
