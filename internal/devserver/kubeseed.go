package devserver

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// KubePortcullisUser is the user Portcullis authenticates to the API server as, by
// KubePortcullisToken: it may impersonate users and groups, and nothing else.
const (
	KubePortcullisUser  = "portcullis"
	KubePortcullisToken = "portcullis-kube-demo-token"
)

// kubeSeed is the cluster the demo and the tests use: Portcullis may impersonate;
// engineers and SREs read (reader); everyone edits in demo (editor); only an approved
// request — in the portcullis:approved group, which only Portcullis can give — edits
// elsewhere. The built-in view and edit roles are aggregated by the controller manager,
// which this control plane does not run: reader and editor stand in for them. In prod:
// the orders-config ConfigMap and the orders Deployment.
const kubeSeed = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: portcullis-impersonator}
rules:
- {apiGroups: [""], resources: [users, groups], verbs: [impersonate]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis-impersonator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis-impersonator}
subjects: [{kind: User, name: ` + KubePortcullisUser + `, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
- {apiGroups: ["", apps], resources: [configmaps, pods, pods/log, deployments, deployments/scale, replicasets, services, namespaces, events], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: editor}
rules:
- {apiGroups: ["", apps], resources: [configmaps, pods, deployments, deployments/scale, services], verbs: [get, list, watch, create, update, patch, delete, deletecollection]}
- {apiGroups: [""], resources: [pods/exec, pods/attach, pods/portforward], verbs: [get, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: teams-read}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects:
- {kind: Group, name: engineering, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: sre, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: security, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis-approved-edit}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: editor}
subjects: [{kind: Group, name: "portcullis:approved", apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: engineering-edit, namespace: demo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: editor}
subjects: [{kind: Group, name: engineering, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: orders-config, namespace: prod}
data: {mode: live, batch_size: "50"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: prod, labels: {app: orders}}
spec:
  replicas: 2
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec:
      containers:
      - {name: orders, image: "busybox:1.36", command: [sleep, "infinity"]}
`

// Seed applies the demo's RBAC, namespaces and objects (kubeSeed). Portcullis's own user
// is one of the static tokens StartKube was given: KubeUser{Token: KubePortcullisToken,
// Name: KubePortcullisUser}.
func (k *Kube) Seed(ctx context.Context) error {
	out, err := k.Kubectl(ctx, kubeSeed, "apply", "-f", "-")
	if err != nil {
		return fmt.Errorf("could not seed the cluster: %v\n%s", err, out)
	}
	return nil
}

// Kubectl runs kubectl against the API server directly as the administrator.
func (k *Kube) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	kubectl, err := KubeBinary("kubectl")
	if err != nil {
		return "", err
	}
	cfg, err := k.Kubeconfig("admin", KubeAdminToken)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", cfg}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
