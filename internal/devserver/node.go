package devserver

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Node names and addresses of the harness's Kubernetes node.
const (
	// NodeName is the node the harness registers; pods set spec.nodeName to it (there is
	// no scheduler).
	NodeName = "portcullis-node"
	// NodeIP is the node's address: a TEST-NET-1 address on this machine's loopback
	// interface (the kubelet refuses 127.0.0.1), so nothing leaves the machine.
	NodeIP = "192.0.2.2"
	// NodeImage is a busybox image built here and imported into containerd: no registry
	// is needed. Pods use it with imagePullPolicy: Never.
	NodeImage = "portcullis.test/busybox:1"
	// nodePauseImage is the sandbox image: the same layer, sleeping.
	nodePauseImage = "portcullis.test/pause:1"
)

// Node is a real Kubernetes node — containerd and a kubelet — registered with a Kube,
// running pods of NodeImage for real exec, attach and port-forward. It needs root, the
// kubelet (`make kubelet`), and Debian's containerd, runc, busybox-static and
// containernetworking-plugins (`make tools`). The kubelet uses some fixed paths of the
// machine, so one Node runs at a time.
type Node struct {
	Dir string

	containerd, kubelet *process
	sock                string
	lock                *os.File
}

// nodeLock is held by the node running on this machine: test binaries run in parallel,
// and a second node would share the kubelet's fixed paths, the address and the bridge.
const nodeLock = "/tmp/portcullis-node.lock"

// lockNode waits (up to timeout) for the machine's node lock.
func lockNode(timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(nodeLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(timeout); ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another Kubernetes node runs on this machine (%s is locked)", nodeLock)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeDirPattern names a node's directory under the system temp dir: short, because
// containerd's socket is in it (a Unix socket path has at most 107 bytes).
const nodeDirPattern = "pcn"

// StartNode starts containerd and a kubelet in a directory of their own (removed by Stop)
// and waits until the node is Ready in k.
func StartNode(k *Kube) (*Node, error) {
	kubelet, err := KubeBinary("kubelet")
	if err != nil {
		return nil, fmt.Errorf("%w (make kubelet)", err)
	}
	if _, err := os.Stat(kubelet); err != nil {
		return nil, fmt.Errorf("kubelet not found at %s: run `make kubelet`", kubelet)
	}
	for _, p := range []string{"containerd", "ctr", "runc", "busybox", "iptables"} {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("%s not found: install containerd runc busybox-static containernetworking-plugins iptables (make tools)", p)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, errors.New("CNI plugins not found in /usr/lib/cni: install containernetworking-plugins (make tools)")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("a Kubernetes node needs root (containers, network namespaces)")
	}
	lock, err := lockNode(10 * time.Minute)
	if err != nil {
		return nil, err
	}
	// Containers a node left behind when its process died before stopping it (only one node
	// runs at a time, and this one holds the lock): their shims serve sockets in other
	// node directories.
	stale := []byte(filepath.Join(os.TempDir(), nodeDirPattern))
	killShims(func(cmdline []byte) bool {
		return bytes.Contains(cmdline, []byte("containerd.sock")) && bytes.Contains(cmdline, stale)
	})
	dir, err := os.MkdirTemp("", nodeDirPattern)
	if err != nil {
		lock.Close()
		return nil, err
	}
	n := &Node{Dir: dir, sock: filepath.Join(dir, "containerd.sock"), lock: lock}
	if err := n.start(k, kubelet); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

// start runs the node's parts in order; StartNode stops what started when one fails.
func (n *Node) start(k *Kube, kubelet string) error {
	f := func(name string) string { return filepath.Join(n.Dir, name) }
	if err := nodeAddrUp(); err != nil {
		return err
	}
	if err := n.writeConfig(); err != nil {
		return err
	}
	var err error
	if n.containerd, err = start("containerd", exec.Command("containerd", "--config", f("containerd.toml")), f("containerd.log")); err != nil {
		return err
	}
	if err := n.containerd.waitReady(30*time.Second, func(ctx context.Context) error {
		return exec.CommandContext(ctx, "ctr", "--address", n.sock, "version").Run()
	}); err != nil {
		return err
	}
	if err := n.importImages(); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	if err := n.writeKubeletConfig(k, port); err != nil {
		return err
	}
	if n.kubelet, err = start("kubelet", exec.Command(kubelet, "--config="+f("kubelet.yaml"), "--kubeconfig="+f("kubelet.kubeconfig"),
		"--root-dir="+f("kubelet"), "--cert-dir="+f("kubelet-pki"), "--node-ip="+NodeIP, "--hostname-override="+NodeName, "--v=1"), f("kubelet.log")); err != nil {
		return err
	}
	client := k.AdminClient()
	return n.kubelet.waitReady(90*time.Second, func(ctx context.Context) error { return nodeReady(ctx, client, k.URL()) })
}

// nodeAddrUp gives this machine the node's address, on the loopback interface: it stays on
// this machine, and the kubelet takes it (it refuses only 127.0.0.0/8).
func nodeAddrUp() error {
	out, err := exec.Command("ip", "addr", "add", NodeIP+"/32", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "already assigned") && !strings.Contains(string(out), "File exists") {
		return fmt.Errorf("ip addr add %s/32 dev lo: %v: %s", NodeIP, err, out)
	}
	return nil
}

// writeConfig writes containerd's configuration (its own root, state and socket; the CRI
// plugin with the local pause image and a bridge network) and the CNI configuration.
func (n *Node) writeConfig() error {
	f := func(name string) string { return filepath.Join(n.Dir, name) }
	for _, d := range []string{"cni/net.d", "cni/ipam", "manifests", "pod-logs", "kubelet", "kubelet-pki"} {
		if err := os.MkdirAll(f(d), 0o700); err != nil {
			return err
		}
	}
	// restrict_oom_score_adj: without CAP_SYS_RESOURCE runc cannot lower a score.
	toml := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
`, f("containerd-root"), f("containerd-state"), n.sock, nodePauseImage, f("cni/net.d"))
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "portcullis", "plugins": [
  {"type": "bridge", "bridge": "portcullis-br0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.7.0/24"}]], "dataDir": %q}}]}`, f("cni/ipam"))
	if err := os.WriteFile(f("containerd.toml"), []byte(toml), 0o600); err != nil {
		return err
	}
	return os.WriteFile(f("cni/net.d/10-portcullis.conflist"), []byte(cni), 0o600)
}

// writeKubeletConfig writes the kubelet's configuration and its kubeconfig (the harness's
// administrator token: the node needs no identity of its own in a test).
func (n *Node) writeKubeletConfig(k *Kube, port int) error {
	f := func(name string) string { return filepath.Join(n.Dir, name) }
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
podLogsDir: %s
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerNode: true
`, NodeIP, port, n.sock, f("manifests"), f("pod-logs"))
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: k, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: kubelet, user: {token: %s}}]
contexts: [{name: k, context: {cluster: k, user: kubelet}}]
current-context: k
`, k.URL(), k.CAFile, KubeAdminToken)
	if err := os.WriteFile(f("kubelet.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	return os.WriteFile(f("kubelet.kubeconfig"), []byte(kc), 0o600)
}

// importImages builds NodeImage and the pause image as a docker archive (a busybox
// rootfs) and imports them into containerd's k8s.io namespace.
func (n *Node) importImages() error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	archive, err := busyboxArchive(busybox)
	if err != nil {
		return err
	}
	p := filepath.Join(n.Dir, "images.tar")
	if err := os.WriteFile(p, archive, 0o600); err != nil {
		return err
	}
	if out, err := exec.Command("ctr", "--address", n.sock, "-n", "k8s.io", "images", "import", p).CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import: %v: %s", err, out)
	}
	return nil
}

// busyboxArchive returns a docker-archive tar with two images over one layer holding
// busybox and its applets: NodeImage (sh) and the pause image (sleeps forever).
func busyboxArchive(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := []string{"bin", "tmp", "etc", "proc", "sys", "dev", "root"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, applet := range []string{"sh", "sleep", "cat", "echo", "ls", "env", "id", "hostname", "ps", "true", "false", "wc", "head", "tail", "grep", "date", "nc", "httpd", "printf", "stty", "tty", "uname", "pwd", "whoami"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777})
	}
	for name, body := range map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(layer.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	var out bytes.Buffer
	aw := tar.NewWriter(&out)
	add := func(name string, b []byte) {
		aw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))})
		aw.Write(b)
	}
	add("layer.tar", layer.Bytes())
	var manifest []map[string]any
	for _, img := range []struct {
		tag string
		cmd []string
	}{{NodeImage, []string{"sh"}}, {nodePauseImage, []string{"sleep", "2147483647"}}} {
		cfg, _ := json.Marshal(map[string]any{
			"architecture": "amd64", "os": "linux",
			"config": map[string]any{"Cmd": img.cmd, "Env": []string{"PATH=/bin"}, "WorkingDir": "/"},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		})
		cs := sha256.Sum256(cfg)
		name := hex.EncodeToString(cs[:]) + ".json"
		add(name, cfg)
		manifest = append(manifest, map[string]any{"Config": name, "RepoTags": []string{img.tag}, "Layers": []string{"layer.tar"}})
	}
	mb, _ := json.Marshal(manifest)
	add("manifest.json", mb)
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// nodeReady checks that the node reports the Ready condition True.
func nodeReady(ctx context.Context, c *http.Client, base string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/nodes/"+NodeName, nil)
	req.Header.Set("Authorization", "Bearer "+KubeAdminToken)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status, Message string }
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node %s: %s", NodeName, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&node); err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status == "True" {
				return nil
			}
			return fmt.Errorf("node not ready: %s", c.Message)
		}
	}
	return errors.New("node has no Ready condition yet")
}

// Stop stops the kubelet, kills every container containerd runs for it, stops containerd,
// unmounts what they left and removes the node's directory.
func (n *Node) Stop() error {
	var errs []error
	if n.kubelet != nil {
		errs = append(errs, n.kubelet.stop(syscall.SIGTERM, 10*time.Second))
	}
	if n.containerd != nil && !n.containerd.exited() {
		ctr := func(args ...string) string {
			out, _ := exec.Command("ctr", append([]string{"--address", n.sock, "-n", "k8s.io"}, args...)...).Output()
			return string(out)
		}
		for _, line := range strings.Split(ctr("tasks", "list", "-q"), "\n") {
			if id := strings.TrimSpace(line); id != "" {
				ctr("tasks", "kill", "-s", "SIGKILL", id)
			}
		}
		errs = append(errs, n.containerd.stop(syscall.SIGTERM, 10*time.Second))
	}
	killShims(func(cmdline []byte) bool { return bytes.Contains(cmdline, []byte(n.sock)) })
	unmountUnder(n.Dir)
	errs = append(errs, os.RemoveAll(n.Dir))
	if n.lock != nil {
		n.lock.Close() // releases the lock
		n.lock = nil
	}
	return errors.Join(errs...)
}

// killShims kills the containerd shims (and with them their containers) whose command
// line match selects.
func killShims(match func(cmdline []byte) bool) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !match(b) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			mounts = append(mounts, fields[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// PodManifest is the YAML of a pod named name in namespace on this node: one container
// "main" of NodeImage running command, or sleeping when none is given (for exec and
// attach).
func (n *Node) PodManifest(namespace, name string, command ...string) string {
	if len(command) == 0 {
		command = []string{"sleep", "2147483647"}
	}
	cmd, _ := json.Marshal(command)
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec:
  nodeName: %s
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  enableServiceLinks: false
  containers:
    - name: main
      image: %s
      imagePullPolicy: Never
      command: %s
`, name, namespace, name, NodeName, NodeImage, cmd)
}
