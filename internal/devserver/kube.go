package devserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Versions `make kubernetes` builds; see deploy/kubernetes and deploy/etcd.
const (
	KubeVersion = "1.36.3"
	EtcdVersion = "3.6.8"
)

// KubeAdminToken is the static bearer token of the harness's cluster administrator (group
// system:masters).
const KubeAdminToken = "portcullis-test-admin"

// KubeBinary returns a Kubernetes program (kube-apiserver, kubectl, kubelet) that `make
// kubernetes` caches under ~/.cache/portcullis/kubernetes-VERSION/ (or the one in
// $PORTCULLIS_KUBE_DIR).
func KubeBinary(name string) (string, error) {
	if dir := os.Getenv("PORTCULLIS_KUBE_DIR"); dir != "" {
		return filepath.Join(dir, name), nil
	}
	return cachedBinary("", "kubernetes-"+KubeVersion, name, "make kubernetes")
}

// EtcdBinary returns the etcd server `make kubernetes` caches under
// ~/.cache/portcullis/etcd-VERSION/, or $PORTCULLIS_ETCD.
func EtcdBinary() (string, error) {
	return cachedBinary("PORTCULLIS_ETCD", "etcd-"+EtcdVersion, "etcd", "make kubernetes")
}

// Kube is a running Kubernetes control plane on loopback: etcd and a kube-apiserver with
// a certificate of its own CA, static bearer tokens, RBAC, and service-account signing keys
// (so the TokenRequest API works).
type Kube struct {
	Port int
	// CAFile is the PEM of the CA that signed the API server's certificate; CA is its bytes.
	CAFile string
	CA     []byte
	// Dir holds the logs, keys and etcd's data.
	Dir string

	etcd, apiserver *process
}

// KubeUser is a static token the API server accepts, with its user name and groups.
type KubeUser struct {
	Token, Name string
	Groups      []string
}

// StartKube starts etcd and kube-apiserver on 127.0.0.1 with their files in dir. The
// administrator's token (KubeAdminToken) is always accepted; users adds others.
func StartKube(dir string, users ...KubeUser) (*Kube, error) {
	etcdBin, err := EtcdBinary()
	if err != nil {
		return nil, err
	}
	apiBin, err := KubeBinary("kube-apiserver")
	if err != nil {
		return nil, err
	}
	k := &Kube{Dir: dir}
	if err := k.writeKeys(append([]KubeUser{{Token: KubeAdminToken, Name: "portcullis-test-admin", Groups: []string{"system:masters"}}}, users...)); err != nil {
		return nil, err
	}
	etcdPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	etcdURL, peerURL := "http://"+addr(etcdPort), "http://"+addr(peerPort)
	k.etcd, err = start("etcd", exec.Command(etcdBin, "--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL, "--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn"), filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	if err := k.etcd.waitReady(30*time.Second, func(ctx context.Context) error { return httpOK(ctx, http.DefaultClient, etcdURL+"/health", "") }); err != nil {
		return nil, err
	}
	if k.Port, err = FreePort(); err != nil {
		k.Stop()
		return nil, err
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	k.apiserver, err = start("kube-apiserver", exec.Command(apiBin,
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(k.Port), "--cert-dir="+f("certs"),
		"--tls-cert-file="+f("apiserver.crt"), "--tls-private-key-file="+f("apiserver.key"),
		"--token-auth-file="+f("tokens.csv"), "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+f("sa.pub"),
		"--service-account-signing-key-file="+f("sa.key"), "--service-cluster-ip-range=10.96.0.0/24",
		"--enable-priority-and-fairness=false", "--profiling=false", "--allow-privileged=true",
		"--disable-admission-plugins=ServiceAccount", "--kubelet-preferred-address-types=InternalIP,Hostname"), f("kube-apiserver.log"))
	if err != nil {
		k.Stop()
		return nil, err
	}
	client := k.AdminClient()
	if err := k.apiserver.waitReady(60*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, client, k.URL()+"/readyz", KubeAdminToken)
	}); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

// URL is the API server's https:// address.
func (k *Kube) URL() string { return "https://" + addr(k.Port) }

// AdminClient is an HTTP client that trusts the API server's CA; requests still need a
// bearer token.
func (k *Kube) AdminClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CA)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
}

// Kubeconfig writes a kubeconfig for user's token against the API server directly and
// returns its path.
func (k *Kube) Kubeconfig(name, token string) (string, error) {
	p := filepath.Join(k.Dir, "kubeconfig-"+name)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: direct
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: direct
  context: {cluster: direct, user: %s}
current-context: direct
`, k.URL(), k.CAFile, name, token, name)
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// Stop ends the API server, then etcd.
func (k *Kube) Stop() error {
	var errs []error
	if k.apiserver != nil {
		errs = append(errs, k.apiserver.stop(syscall.SIGTERM, 10*time.Second))
	}
	if k.etcd != nil {
		errs = append(errs, k.etcd.stop(syscall.SIGTERM, 5*time.Second))
	}
	return errors.Join(errs...)
}

// writeKeys writes the CA, the API server's certificate for 127.0.0.1 and localhost, the
// service-account signing key pair, and the static token file.
func (k *Kube) writeKeys(users []KubeUser) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis-test-kube-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"localhost", "kubernetes", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("10.96.0.1")}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(k.Dir, "certs"), 0o700); err != nil {
		return err
	}
	k.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	k.CAFile = filepath.Join(k.Dir, "ca.crt")
	tokens := ""
	for _, u := range users {
		tokens += fmt.Sprintf("%s,%s,%s,%q\n", u.Token, u.Name, u.Name, strings.Join(u.Groups, ","))
	}
	for name, b := range map[string][]byte{
		"ca.crt":        k.CA,
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"apiserver.key": pemKey(srvKey),
		"sa.key":        pemKey(saKey),
		"sa.pub":        pemPublic(&saKey.PublicKey),
		"tokens.csv":    []byte(tokens),
	} {
		p := filepath.Join(k.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemKey(key *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func pemPublic(key *ecdsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// httpOK checks that GET url answers 200 (with a bearer token when given).
func httpOK(ctx context.Context, c *http.Client, url, token string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// HelmVersion is the Helm `make helm` builds from the module proxy, for the chart tests.
const HelmVersion = "4.3.2"

// HelmBinary returns the helm program `make helm` caches under
// ~/.cache/portcullis/helm-VERSION/, or $PORTCULLIS_HELM.
func HelmBinary() (string, error) {
	return cachedBinary("PORTCULLIS_HELM", "helm-"+HelmVersion, "helm", "make helm")
}
