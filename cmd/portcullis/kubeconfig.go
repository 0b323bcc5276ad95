package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigCmd writes (or merges) a kubeconfig context for a kubernetes resource: its
// server is Portcullis's front end, and its user runs `portcullis kube-credential`, so
// kubectl presents the caller's Portcullis token.
func kubeconfigCmd() *cobra.Command {
	var (
		c                apiClient
		resource, out    string
		contextName      string
		noSwitch, stdout bool
	)
	cmd := &cobra.Command{
		Use:   "kubeconfig --resource NAME",
		Short: "Write a kubeconfig context that reaches a Kubernetes cluster through Portcullis",
		Long: `Adds (or updates) a context, cluster and user named portcullis-<resource> in the kubeconfig
($KUBECONFIG's first file, else ~/.kube/config, or --kubeconfig) and makes it the current
context. kubectl then reaches the cluster through Portcullis and authenticates with
portcullis kube-credential: $PORTCULLIS_TOKEN when set, else the sign-in portcullis login keeps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cl struct {
				Server string `json:"server"`
				CAPEM  string `json:"certificate_authority_pem"`
			}
			if err := c.do(http.MethodGet, "/resources/"+url.PathEscape(resource)+"/kubeconfig", nil, &cl); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("could not find this program's path for the credential plugin: %w", err)
			}
			name := contextName
			if name == "" {
				name = "portcullis-" + resource
			}
			path := out
			if path == "" {
				path = defaultKubeconfig()
			}
			kc := clientcmdapi.NewConfig()
			if !stdout {
				if kc, err = clientcmd.LoadFromFile(path); errors.Is(err, fs.ErrNotExist) {
					kc, err = clientcmdapi.NewConfig(), nil
				}
				if err != nil {
					return fmt.Errorf("could not read %s: %w", path, err)
				}
			}
			kc.Clusters[name] = &clientcmdapi.Cluster{Server: cl.Server, CertificateAuthorityData: []byte(cl.CAPEM)}
			kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
				APIVersion: "client.authentication.k8s.io/v1", Command: self, Args: []string{"kube-credential", "--server", c.server},
				InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
				InstallHint:     "portcullis kube-credential is the Portcullis CLI; sign in with: portcullis login --server " + c.server,
			}}
			ctx := &clientcmdapi.Context{Cluster: name, AuthInfo: name}
			if old := kc.Contexts[name]; old != nil {
				ctx.Namespace = old.Namespace // keep the namespace the user chose
			}
			kc.Contexts[name] = ctx
			if !noSwitch || kc.CurrentContext == "" {
				kc.CurrentContext = name
			}
			if stdout {
				b, err := clientcmd.Write(*kc)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := clientcmd.WriteToFile(*kc, path); err != nil {
				return fmt.Errorf("could not write %s: %w", path, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %s (server %s) written to %s", name, cl.Server, path)
			if kc.CurrentContext == name {
				fmt.Fprint(cmd.OutOrStdout(), " and made current")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\ntry: kubectl --context %s get namespaces\n", name)
			return nil
		},
	}
	addAPIFlags(cmd, &c)
	cmd.Flags().StringVar(&resource, "resource", "", "the kubernetes resource (required)")
	cmd.Flags().StringVar(&out, "kubeconfig", "", "kubeconfig file to write (default: $KUBECONFIG's first file, else ~/.kube/config)")
	cmd.Flags().BoolVar(&stdout, "stdout", false, "print a kubeconfig with just this context instead of writing a file")
	cmd.Flags().StringVar(&contextName, "context", "", "name of the context, cluster and user (default portcullis-<resource>)")
	cmd.Flags().BoolVar(&noSwitch, "no-switch", false, "do not make the context the current one")
	cmd.MarkFlagRequired("resource")
	return cmd
}

// defaultKubeconfig is the file kubectl reads first: $KUBECONFIG's first entry, else
// ~/.kube/config.
func defaultKubeconfig() string {
	if env := os.Getenv("KUBECONFIG"); env != "" {
		if first, _, _ := strings.Cut(env, string(os.PathListSeparator)); first != "" {
			return first
		}
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".kube", "config")
}
