package web

import (
	"net/http"

	"github.com/gorilla/mux"
)

// kubeCluster is what a kubeconfig needs to reach a kubernetes resource through
// Portcullis: the front end's URL and the certificate authority its listener chains to.
type kubeCluster struct {
	Resource string `json:"resource"`
	Server   string `json:"server"`
	// CAPEM is the PEM certificate authority (kubeconfig certificate-authority-data).
	CAPEM string `json:"certificate_authority_pem"`
}

// kubeconfig answers GET /api/v1/resources/{name}/kubeconfig for a kubernetes resource.
func (s *Server) kubeconfig(w http.ResponseWriter, r *http.Request) error {
	name := mux.Vars(r)["name"]
	res := s.Config.Resource(name)
	if res == nil || res.Kind != "kubernetes" {
		return errStatus(http.StatusNotFound, "no kubernetes resource %q", name)
	}
	if s.KubeCA == nil {
		return errStatus(http.StatusServiceUnavailable, "the Kubernetes front end is not running in this server")
	}
	ca, err := s.KubeCA(name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, kubeCluster{Resource: name, Server: res.KubePublicURL(), CAPEM: string(ca)})
}
