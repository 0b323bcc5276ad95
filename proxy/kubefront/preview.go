package kubefront

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"
)

// Bounds of a preview: how long its calls to the API server may take, how much of an
// answer it reads, how long it may be, and how many names of a collection it lists.
const (
	previewTimeout = 10 * time.Second
	previewRead    = 4 << 20
	previewMax     = 64 << 10
	previewNames   = 50
)

// preview is what an approver sees would change, asked of the live cluster with the
// privilege the approval would grant: for create, update and patch (apply included) the
// API server's own dry run of the exact request (dryRun=All) as a diff against the live
// object, managedFields, status and bookkeeping stripped; for delete the object that
// would go, for deletecollection how many and which. Empty for what changes no object
// (reads, exec).
func (x *exchange) preview() string {
	a := x.attrs
	if a.Kind == "pods" && (a.Subresource == "exec" || a.Subresource == "attach") {
		return x.execPreview()
	}
	if !a.Resource || (a.Subresource != "" && a.Subresource != "scale" && a.Subresource != "status") || a.Kind == "secrets" {
		return ""
	}
	ctx, cancel := context.WithTimeout(x.r.Context(), previewTimeout)
	defer cancel()
	var out string
	switch a.Verb {
	case "create", "update", "patch":
		out = x.dryRunDiff(ctx)
	case "delete":
		out = x.wouldDelete(ctx)
	case "deletecollection":
		out = x.wouldDeleteAll(ctx)
	default:
		return ""
	}
	if len(out) > previewMax {
		out = out[:previewMax] + "\n… (cut: the preview is longer than 64 KiB)\n"
	}
	return out
}

// dryRunDiff runs the request with dryRun=All and diffs the result against the live object.
func (x *exchange) dryRunDiff(ctx context.Context) string {
	q := x.r.URL.Query()
	q.Set("dryRun", "All")
	code, after, err := x.ask(ctx, x.r.Method, x.r.URL.Path, q.Encode(), x.body, x.r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		return "no preview: the dry run could not be made: " + err.Error()
	case code >= 300:
		return "the API server refuses this request in a dry run: " + statusMessage(after)
	}
	var before []byte
	if x.attrs.Verb != "create" {
		// The live object (or its scale, or the object with its status, for those subresources).
		code, live, err := x.ask(ctx, http.MethodGet, x.r.URL.Path, "", nil, "")
		switch {
		case err != nil:
			return "no preview: the live object could not be read: " + err.Error()
		case code == http.StatusNotFound: // an apply that creates
		case code >= 300:
			return "no preview: the live object could not be read: " + statusMessage(live)
		default:
			before = live
		}
	}
	keepStatus := x.attrs.Subresource == "status"
	from, to := cleanYAML(before, keepStatus), cleanYAML(after, keepStatus)
	if from == to {
		return "no change: the object would stay as it is\n"
	}
	diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: difflib.SplitLines(from), B: difflib.SplitLines(to),
		FromFile: "live", ToFile: "after this request (dry run)", Context: 4})
	return diff
}

// wouldDelete shows the live object a delete removes.
func (x *exchange) wouldDelete(ctx context.Context) string {
	code, live, err := x.ask(ctx, http.MethodGet, x.r.URL.Path, "", nil, "")
	switch {
	case err != nil:
		return "no preview: the live object could not be read: " + err.Error()
	case code == http.StatusNotFound:
		return "nothing to delete: the object does not exist\n"
	case code >= 300:
		return "no preview: the live object could not be read: " + statusMessage(live)
	}
	return "would delete:\n" + cleanYAML(live, false)
}

// wouldDeleteAll lists what a deletecollection removes: its count and names.
func (x *exchange) wouldDeleteAll(ctx context.Context) string {
	q := url.Values{}
	for _, k := range []string{"labelSelector", "fieldSelector"} {
		if v := x.r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	code, body, err := x.ask(ctx, http.MethodGet, x.r.URL.Path, q.Encode(), nil, "")
	switch {
	case err != nil:
		return "no preview: the objects could not be listed: " + err.Error()
	case code >= 300:
		return "no preview: the objects could not be listed: " + statusMessage(body)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name, Namespace string } `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return "no preview: the list could not be read"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "would delete %d objects:\n", len(list.Items))
	for i, it := range list.Items {
		if i == previewNames {
			fmt.Fprintf(&b, "… and %d more\n", len(list.Items)-previewNames)
			break
		}
		fmt.Fprintf(&b, "- %s\n", it.Metadata.Name)
	}
	return b.String()
}

// ask makes one request to the API server as the approved request would run (the
// caller, with the approved groups), and returns the status and up to previewRead bytes.
func (x *exchange) ask(ctx context.Context, method, path, query string, body []byte, contentType string) (int, []byte, error) {
	u := *x.srv.upstream
	u.Path, u.RawPath, u.RawQuery = strings.TrimSuffix(u.Path, "/")+path, "", query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	cred, err := x.srv.Credentials.HeaderCredential(ctx, x.res.Name, x.who.User, x.v.CredentialRole(x.res), false)
	if err != nil {
		return 0, nil, fmt.Errorf("no credential: %w", err)
	}
	x.identify(req.Header, cred, true)
	resp, err := x.srv.transport.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, previewRead))
	return resp.StatusCode, b, err
}

// cleanYAML renders an object as YAML without what every write changes or nobody wrote:
// managedFields, status (unless keepStatus), resourceVersion, generation, uid,
// creationTimestamp, and kubectl apply's last-applied annotation.
func cleanYAML(b []byte, keepStatus bool) string {
	if len(b) == 0 {
		return ""
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return string(b)
	}
	if !keepStatus {
		delete(obj, "status")
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		for _, k := range []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"} {
			delete(md, k)
		}
		// kubectl apply's copy of what it applied repeats the object on one line.
		if an, ok := md["annotations"].(map[string]any); ok {
			delete(an, "kubectl.kubernetes.io/last-applied-configuration")
			if len(an) == 0 {
				delete(md, "annotations")
			}
		}
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		return string(b)
	}
	return string(y)
}

// statusMessage is a Status answer's message, or the answer itself.
func statusMessage(b []byte) string {
	var st struct{ Message string }
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		return st.Message
	}
	if len(b) > 500 {
		b = b[:500]
	}
	return string(b)
}

// execPreview says what an exec or attach would do: the pod, the container, the command
// and whether input and a terminal are attached (all from the request itself).
func (x *exchange) execPreview() string {
	a, q := x.attrs, x.r.URL.Query()
	container := q.Get("container")
	if container == "" {
		container = "(the pod's default container)"
	}
	var b strings.Builder
	if a.Subresource == "attach" {
		fmt.Fprintf(&b, "would attach to pod %s in %s, container %s\n", a.Name, a.Namespace, container)
	} else {
		fmt.Fprintf(&b, "would run in pod %s in %s, container %s:\n  %s\n", a.Name, a.Namespace, container, shellJoin(q["command"]))
	}
	yes := func(k string) string {
		if q.Get(k) == "true" || q.Get(k) == "1" {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(&b, "stdin: %s, terminal: %s; the session is recorded\n", yes("stdin"), yes("tty"))
	return b.String()
}

// shellJoin quotes a command's words as a shell would need them.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
