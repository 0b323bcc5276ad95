package httpfront

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/signed"
)

// rawExchange writes raw to the front end on one connection and reads every response
// until the connection closes or goes quiet.
func rawExchange(t *testing.T, addr, raw string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		out = append(out, resp)
		if resp.Close {
			return out
		}
	}
}

func statuses(rs []*http.Response) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.StatusCode)
	}
	return out
}

// TestAmbiguousFraming: a request with both Content-Length and Transfer-Encoding (the
// classic smuggling shape), or repeated framing fields, is refused and its connection
// closed; nothing reaches the upstream. Framing is followed across a keep-alive
// connection, so a smuggling attempt after honest requests is caught too.
func TestAmbiguousFraming(t *testing.T) {
	e := newEnv(t)
	const auth = "Host: admin.test\r\nAuthorization: Bearer alice-token\r\n"
	for _, tc := range []struct {
		name, raw string
		want      []int
	}{
		{"CL and TE", "POST /orders HTTP/1.1\r\n" + auth + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + auth + "\r\n", []int{400}},
		{"TE and CL", "GET /orders HTTP/1.1\r\n" + auth + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{400}},
		{"differing CLs", "POST /orders HTTP/1.1\r\n" + auth + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", []int{400}},
		{"TE twice", "POST /orders HTTP/1.1\r\n" + auth + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{501}},
		{"after honest requests", "GET /orders HTTP/1.1\r\n" + auth + "\r\n" +
			"GET /orders HTTP/1.1\r\n" + auth + "Content-Length: 5\r\n\r\nhello" +
			"GET /orders HTTP/1.1\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n" +
			"GET /orders HTTP/1.1\r\n" + auth + "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{200, 200, 200, 400}},
	} {
		before := len(e.upstreamSaw())
		got := rawExchange(t, e.front.Addr, tc.raw)
		if fmt.Sprint(statuses(got)) != fmt.Sprint(tc.want) {
			t.Errorf("%s: answered %v, want %v", tc.name, statuses(got), tc.want)
		}
		if n := len(e.upstreamSaw()) - before; n != len(tc.want)-1 {
			t.Errorf("%s: %d requests reached the upstream, want %d", tc.name, n, len(tc.want)-1)
		}
	}
}

// FuzzFraming: the connection scanner never panics, and what it notes does not depend on
// how the stream is split into reads.
func FuzzFraming(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiPOST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n1\r\na\r\n0\r\n\r\n"), byte(3))
	f.Add([]byte("\r\nGET / HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n"), byte(1))
	f.Fuzz(func(t *testing.T, stream []byte, split byte) {
		var whole, parts framing
		whole.feed(stream)
		step := int(split)%17 + 1
		for i := 0; i < len(stream); i += step {
			parts.feed(stream[i:min(i+step, len(stream))])
		}
		if fmt.Sprint(whole.heads) != fmt.Sprint(parts.heads) || whole.state != parts.state {
			t.Fatalf("split by %d: %v (state %d), whole: %v (state %d)", step, parts.heads, parts.state, whole.heads, whole.state)
		}
	})
}

// TestExpectContinue: a client that waits for 100 Continue gets it once Portcullis reads
// the body of a request it will decide, and none when it refuses before reading.
func TestExpectContinue(t *testing.T) {
	e := newEnv(t)
	c, err := net.Dial("tcp", e.front.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PUT /bench/x HTTP/1.1\r\nHost: admin.test\r\nAuthorization: Bearer alice-token\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("before the body: %q, want 100 Continue", line)
	}
	br.ReadString('\n') // the blank line after 100 Continue
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusAccepted { // writes are held in this configuration
		t.Fatalf("after the body: %v %v", resp, err)
	}
	got := rawExchange(t, e.front.Addr, "PUT /x HTTP/1.1\r\nHost: admin.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if len(got) != 1 || got[0].StatusCode != 401 {
		t.Errorf("no token: %v, want 401 without 100 Continue", statuses(got))
	}
}

// TestUpgradeRefused: WebSocket upgrades are refused clearly, not tunnelled.
func TestUpgradeRefused(t *testing.T) {
	e := newEnv(t)
	resp, out := e.do("admin.test", "alice", "GET", "/ws", "", "Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version", "13")
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(fmt.Sprint(out["type"]), "upgrade-refused") {
		t.Errorf("upgrade: %d %v", resp.StatusCode, out)
	}
	if len(e.upstreamSaw()) != 0 {
		t.Error("an upgrade reached the upstream")
	}
}

// testPKI is a CA with a server certificate for names and a client certificate, in PEM
// files under dir.
type testPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
	caFile string
	pool   *x509.CertPool
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{ca: ca, caKey: key, dir: t.TempDir(), pool: x509.NewCertPool(), serial: 1}
	p.pool.AddCert(ca)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return p
}

// issue writes a certificate for names (server) or a client certificate (names empty),
// and returns its files and the tls.Certificate.
func (p *testPKI) issue(t *testing.T, name string, names ...string) (certFile, keyFile string, cert tls.Certificate) {
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	if len(names) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPEM, keyPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	cert, _ = tls.X509KeyPair(certPEM, keyPEM)
	return certFile, keyFile, cert
}

// TestTLS: an https upstream that requires a client certificate is reached with the
// configured CA and certificate (and refused without them); a resource with server_tls is
// served over TLS by SNI on the shared listener, refuses plain HTTP, and refuses a request
// for another host on a connection opened for it.
func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	_, _, upCert := pki.issue(t, "upstream", "127.0.0.1")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"client": %q}`, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{upCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}
	up.StartTLS()
	t.Cleanup(up.Close)
	clientCert, clientKey, _ := pki.issue(t, "portcullis")
	serverCert, serverKey, _ := pki.issue(t, "secure", "secure.test")
	e := newEnvConfig(t, func(y string) string {
		y = strings.Replace(y, "resources:\n", fmt.Sprintf(`resources:
  - name: secure
    kind: http
    upstream: %s
    hosts: [secure.test]
    http:
      tls: {ca_file: %s, cert_file: %s, key_file: %s}
      server_tls: {cert_file: %s, key_file: %s}
  - name: nocert
    kind: http
    upstream: %s
    hosts: [nocert.test]
    http:
      tls: {ca_file: %s}
`, up.URL, pki.caFile, clientCert, clientKey, serverCert, serverKey, up.URL, pki.caFile), 1)
		return strings.Replace(y, "names: [admin, down]", "names: [admin, down, secure, nocert]", 1)
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, ServerName: "secure.test"}}}
	get := func(url, host string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer alice-token")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tlsURL := "https://" + e.front.Addr + "/things"
	if code, body := get(tlsURL, "secure.test"); code != 200 || !strings.Contains(body, `"client": "portcullis"`) {
		t.Errorf("over TLS to an mTLS upstream: %d %s", code, body)
	}
	if code, body := get(tlsURL, "admin.test"); code != http.StatusMisdirectedRequest {
		t.Errorf("another host on a connection opened for secure.test: %d %s", code, body)
	}
	if code, body := get(e.front.URL+"/things", "secure.test"); code != 400 || !strings.Contains(body, "https-required") {
		t.Errorf("plain HTTP to a TLS resource: %d %s", code, body)
	}
	if code, _ := get(e.front.URL+"/orders", "admin.test"); code != 200 {
		t.Errorf("plain HTTP beside TLS on the same port: %d", code)
	}
	if code, body := get(e.front.URL+"/things", "nocert.test"); code != 502 {
		t.Errorf("an mTLS upstream without a client certificate: %d %s", code, body)
	}
}

// TestConditionsOnTheRequest: a policy's `when` sees the request's path params, query,
// headers and JSON body through the front end.
func TestConditionsOnTheRequest(t *testing.T) {
	e := newEnvConfig(t, func(y string) string {
		return y + `  - name: big-refunds
    description: refunds over 1000 are never done here
    match: {resources: {names: [admin]}, methods: [POST], paths: ["/orders/{id}/refund"]}
    when: 'request.body.amount > 1000 || request.params.id == "13" || ("force" in request.query)'
    effect: deny
`
	})
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/orders/2/refund", `{"amount": 10}`, http.StatusAccepted},
		{"/orders/2/refund", `{"amount": 5000}`, http.StatusForbidden},
		{"/orders/13/refund", `{"amount": 10}`, http.StatusForbidden},
		{"/orders/2/refund?force=1", `{"amount": 10}`, http.StatusForbidden},
	} {
		resp, out := e.do("admin.test", "alice", "POST", tc.path, tc.body, "Content-Type", "application/json")
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.path, tc.body, resp.StatusCode, out, tc.want)
		}
		if tc.want == http.StatusForbidden && !strings.Contains(fmt.Sprint(out["detail"]), "big-refunds") {
			t.Errorf("%s: the denial does not name the policy: %v", tc.path, out)
		}
	}
}

// TestBodiesRecorded: with record.bodies, the exchange's request and response bodies and
// chosen headers are in its recording, with secret-looking and configured fields
// redacted, and credentials never among the headers.
func TestBodiesRecorded(t *testing.T) {
	e := newEnvConfig(t, func(y string) string {
		y = strings.Replace(y, "http: {max_request_bytes: 1024, timeout: 1s}",
			"http: {max_request_bytes: 1024, timeout: 1s, record: {bodies: true, headers: [X-Request-Id, Authorization, Content-Type], redact_fields: [card]}}", 1)
		y = strings.Replace(y, "match: {resources: {names: [admin]}, actions: [write]}", `match: {resources: {names: [admin]}, actions: [write], paths: ["/orders/**"]}`, 1)
		return y + `  - name: bench-writes
    match: {resources: {names: [admin]}, actions: [write], paths: ["/bench/**"]}
    effect: allow
`
	})
	const body = `{"amount": 12, "password": "hunter2", "card": "4111", "nested": {"api_key": "k-1", "note": "ok"}}`
	resp, _ := e.do("admin.test", "alice", "POST", "/bench/refund", body, "Content-Type", "application/json", "X-Request-Id", "req-9")
	if resp.StatusCode != 200 {
		t.Fatalf("allowed write: %d", resp.StatusCode)
	}
	var req, res *audit.Event
	for deadline := time.Now().Add(3 * time.Second); res == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// The result event is queued after the response: wait for it.
		if err := audit.Scan(e.cfg.Audit.Dir, audit.Filter{}, func(ev *audit.Event) error {
			switch ev.Type {
			case audit.TypeHTTPRequest:
				req = ev
			case audit.TypeHTTPResult:
				res = ev
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if req == nil || res == nil {
		t.Fatal("no request and result events")
	}
	rb := fmt.Sprint(req.Details["request_body"])
	for _, secret := range []string{"hunter2", "4111", "k-1"} {
		if strings.Contains(rb, secret) {
			t.Errorf("the recorded request body keeps %q: %s", secret, rb)
		}
	}
	if !strings.Contains(rb, `"amount":12`) || !strings.Contains(rb, `"note":"ok"`) || !strings.Contains(rb, `"password":"[redacted]"`) {
		t.Errorf("recorded request body: %s", rb)
	}
	hs := fmt.Sprint(req.Details["request_headers"])
	if !strings.Contains(hs, "req-9") || strings.Contains(hs, "alice-token") || strings.Contains(hs, "Authorization") {
		t.Errorf("recorded request headers: %s", hs)
	}
	if got := fmt.Sprint(res.Details["response_body"]); !strings.Contains(got, `"method":"POST"`) {
		t.Errorf("recorded response body: %s", got)
	}
}

// TestBrowserSession: a page request without a token is sent to the console to sign in;
// an API call gets 401. A console ticket for this host becomes a session cookie once;
// a ticket for another host, an expired one, or one used already is refused; with the
// cookie, reads run and cross-origin writes are refused.
func TestBrowserSession(t *testing.T) {
	e := newEnv(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, header ...string) *http.Response {
		req, _ := http.NewRequest("GET", e.front.URL+path, nil)
		req.Host = "admin.test"
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get("/orders?x=1", "Accept", "text/html,application/xhtml+xml")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound ||
		loc != "http://portcullis.test/http-login?next=%2Forders%3Fx%3D1&origin=http%3A%2F%2Fadmin.test" {
		t.Errorf("a page without a session: %d %q", resp.StatusCode, loc)
	}
	if resp := get("/orders", "Accept", "application/json"); resp.StatusCode != 401 {
		t.Errorf("an API call without a token: %d, want 401", resp.StatusCode)
	}
	ticket := func(host string, ttl time.Duration) string {
		return e.keys.Encode(signed.TicketPurpose, signed.Ticket{User: "alice", Groups: []string{"engineering"}, Host: host,
			Nonce: rand.Text(), Expires: time.Now().Add(ttl), Session: time.Now().Add(time.Hour)})
	}
	for name, tk := range map[string]string{"another host": ticket("other.test", time.Minute), "expired": ticket("admin.test", -time.Second), "forged": "eyJ1IjoiYWxpY2UifQ.AAAA"} {
		if resp := get(callbackPath + "?next=/orders&ticket=" + tk); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s ticket: %d, want 403", name, resp.StatusCode)
		}
	}
	good := ticket("admin.test", time.Minute)
	resp = get(callbackPath + "?next=/orders&ticket=" + good)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/orders" || cookie == nil || !cookie.HttpOnly {
		t.Fatalf("a good ticket: %d %q cookie %v", resp.StatusCode, resp.Header.Get("Location"), cookie)
	}
	if resp := get(callbackPath + "?next=/orders&ticket=" + good); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a ticket used twice: %d, want 403", resp.StatusCode)
	}
	if resp := get("/orders", "Cookie", sessionCookie+"="+cookie.Value); resp.StatusCode != 200 {
		t.Errorf("a read with the session cookie: %d", resp.StatusCode)
	}
	// The cookie is for admin.test alone.
	req, _ := http.NewRequest("GET", e.front.URL+"/", nil)
	req.Host = "down.test"
	req.Header.Set("Cookie", sessionCookie+"="+cookie.Value)
	if resp, _ := noRedirect.Do(req); resp.StatusCode != 401 {
		t.Errorf("the cookie on another host: %d, want 401", resp.StatusCode)
	}
	if resp, out := e.do("admin.test", "", "POST", "/orders/2/refund", "{}", "Cookie", sessionCookie+"="+cookie.Value, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site write with the cookie: %d %v", resp.StatusCode, out)
	}
	if resp, out := e.do("admin.test", "", "POST", "/orders/2/refund", "{}", "Cookie", sessionCookie+"="+cookie.Value, "Sec-Fetch-Site", "same-origin"); resp.StatusCode != http.StatusAccepted {
		t.Errorf("a same-origin write with the cookie: %d %v", resp.StatusCode, out)
	}
}

// TestApproversSeeBodyAndReason: a held request's artifact carries its body as approvers
// should see it (secret fields redacted) and the caller's Portcullis-Reason; a policy
// that requires a reason refuses to hold a request without one.
func TestApproversSeeBodyAndReason(t *testing.T) {
	e := newEnvConfig(t, func(y string) string {
		return strings.Replace(y, "quorum: {required_teams: [sre], timeout: 1m}", "quorum: {required_teams: [sre], timeout: 1m, require_reason: true}", 1)
	})
	if resp, out := e.do("admin.test", "alice", "POST", "/orders/2/refund", `{"amount": 12}`, "Content-Type", "application/json"); resp.StatusCode != 400 ||
		!strings.Contains(fmt.Sprint(out["detail"]), ReasonHeader) {
		t.Errorf("no reason where one is required: %d %v", resp.StatusCode, out)
	}
	resp, out := e.do("admin.test", "alice", "POST", "/orders/2/refund", `{"amount": 12, "password": "hunter2"}`,
		"Content-Type", "application/json", ReasonHeader, "customer asked, TICKET-7")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("held: %d %v", resp.StatusCode, out)
	}
	req, err := e.approvals.Get(context.Background(), out["approval"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if a := req.Artifact; a.Reason != "customer asked, TICKET-7" || a.Body != `{"amount":12,"password":"[redacted]"}` {
		t.Errorf("the artifact approvers see: reason %q, body %q", a.Reason, a.Body)
	}
}

// TestResponses: a streamed response reaches the client as it is written, not when it
// ends; a response over http.max_response_bytes is refused (declared length) or cut
// (stream), and one exactly at the bound passes whole.
func TestResponses(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "data: second\n\n")
		case "/big":
			w.Header().Set("Content-Length", "2000")
			w.Write(bytes.Repeat([]byte("x"), 2000))
		case "/exact":
			w.Write(bytes.Repeat([]byte("x"), 1000))
		case "/endless":
			for range 10 {
				w.Write(bytes.Repeat([]byte("x"), 500))
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(up.Close)
	e := newEnvConfig(t, func(y string) string {
		return strings.Replace(y, "resources:\n", fmt.Sprintf(`resources:
  - name: stream
    kind: http
    upstream: %s
    hosts: [stream.test]
    http: {max_response_bytes: 1000}
`, up.URL), 1) + `  - name: stream-read
    match: {resources: {names: [stream]}, actions: [read]}
    effect: allow
`
	})
	req, _ := http.NewRequest("GET", e.front.URL+"/stream", nil)
	req.Host = "stream.test"
	req.Header.Set("Authorization", "Bearer alice-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("the first event, before the upstream ends: %q %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("the rest of the stream: %q", rest)
	}
	get := func(path string) (int, int, error) {
		req, _ := http.NewRequest("GET", e.front.URL+path, nil)
		req.Host = "stream.test"
		req.Header.Set("Authorization", "Bearer alice-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, len(b), err
	}
	if code, _, _ := get("/big"); code != http.StatusBadGateway {
		t.Errorf("a declared length over the bound: %d, want 502", code)
	}
	if code, n, err := get("/exact"); code != 200 || n != 1000 || err != nil {
		t.Errorf("exactly at the bound: %d, %d bytes, %v", code, n, err)
	}
	if _, n, err := get("/endless"); err == nil || n > 1000 {
		t.Errorf("a stream past the bound: %d bytes, err %v; want it cut at 1000", n, err)
	}
}

// TestSlowClient: a client that stalls in its request head or body is cut off.
func TestSlowClient(t *testing.T) {
	cfg, err := configs.Parse("slow.yaml", []byte(fmt.Sprintf(testConfig, sha256.Sum256([]byte("alice-token")), sha256.Sum256([]byte("bob-token")), "http://127.0.0.1:9", 9)))
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, cfg, nil)
	s.HeaderTimeout, s.ReadTimeout = 300*time.Millisecond, 600*time.Millisecond
	f := serveFront(t, s)
	for name, raw := range map[string]string{
		"head": "GET /orders HTTP/1.1\r\nHost: admin.test\r\n",
		"body": "POST /orders HTTP/1.1\r\nHost: admin.test\r\nAuthorization: Bearer alice-token\r\nContent-Length: 100\r\n\r\nabc",
	} {
		c, err := net.Dial("tcp", f.Addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, raw)
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c) // until the server cuts the connection
		c.Close()
		if d := time.Since(start); d > 3*time.Second || strings.Contains(string(b), "200 OK") {
			t.Errorf("a client stalling in its %s: cut after %v, got %q", name, d, b)
		}
	}
}
