# Portcullis. `make demo` runs the demo; `make test` runs every test against real servers.
# Both install what they need on a Debian/Ubuntu machine (apt-get as root) and build Vault
# from the Go module proxy once, cached outside the clone.

GO            ?= go
BIN           := bin/portcullis
VERSION       ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
CACHE_DIR     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/portcullis
VAULT_VERSION := 1.21.1
VAULT_DIR     := $(CACHE_DIR)/vault-$(VAULT_VERSION)
VAULT         := $(VAULT_DIR)/vault
VAULT_PLUGIN  := $(VAULT_DIR)/plugins/postgresql-database-plugin
# Vault's Kubernetes secrets engine, an external plugin for the minimal build; its version
# (deploy/vault/go.mod) keys a stamp outside the plugin directory (Vault runs every file in it).
VAULT_K8S_VERSION := 0.12.0
VAULT_K8S     := $(VAULT_DIR)/plugins/vault-plugin-secrets-kubernetes
VAULT_K8S_STAMP := $(VAULT_DIR)/.vault-plugin-secrets-kubernetes-$(VAULT_K8S_VERSION)
# Vault's Kubernetes auth method (Portcullis's own login on Kubernetes), also external.
VAULT_K8S_AUTH_VERSION := 0.23.1
VAULT_K8S_AUTH := $(VAULT_DIR)/plugins/vault-plugin-auth-kubernetes
VAULT_K8S_AUTH_STAMP := $(VAULT_DIR)/.vault-plugin-auth-kubernetes-$(VAULT_K8S_AUTH_VERSION)
KUBE_VERSION  := 1.36.3
KUBE_DIR      := $(CACHE_DIR)/kubernetes-$(KUBE_VERSION)
ETCD_VERSION  := 3.6.8
ETCD          := $(CACHE_DIR)/etcd-$(ETCD_VERSION)/etcd
HELM_VERSION  := 4.3.2
HELM          := $(CACHE_DIR)/helm-$(HELM_VERSION)/helm
# The OpenTelemetry Collector the telemetry tests export to: the OTLP receiver and the file
# exporter (internal/tools/otelcol, a module of its own), built once.
OTELCOL_VERSION := 0.161.0
OTELCOL       := $(CACHE_DIR)/otelcol-$(OTELCOL_VERSION)/otelcol
TEST_FLAGS    ?= -race -count=1 -timeout 15m
FUZZTIME      ?= 30s
APT_PACKAGES  := postgresql redis-server rsyslog
OIDC_DIR      := web/testdata/oidc

.PHONY: soak helm otelcol chart bench-k8s all build demo test fuzz-smoke bench bench-pg bench-pg-pinned bench-http tools servers vault kubernetes kubelet node browser player check fmt vet clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/portcullis

## demo: build, start PostgreSQL and Portcullis with configs/demo.yaml, print how to connect.
demo: servers build
	$(BIN) demo --config configs/demo.yaml

## test: the whole suite, with -race, against real PostgreSQL, Redis and Vault.
test: tools build
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(BIN) policy check --config configs/demo.yaml
	$(BIN) policy check --config configs/example.yaml
	$(BIN) policy test configs/policies/tests
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz-smoke

## fuzz-smoke: each network-facing fuzz target for FUZZTIME (30s), the others briefly.
fuzz-smoke:
	bash .ci/fuzz.sh ./proxy/pgwire FuzzStartup $(FUZZTIME)
	bash .ci/fuzz.sh ./proxy/pgwire FuzzMessages $(FUZZTIME)
	bash .ci/fuzz.sh ./proxy/pgwire FuzzNames $(FUZZTIME)
	bash .ci/fuzz.sh ./proxy/pgwire FuzzShapeKey $(FUZZTIME)
	bash .ci/fuzz.sh ./proxy/pgwire FuzzDecodeExecute 10s
	bash .ci/fuzz.sh ./proxy/pgwire FuzzDecodeBind 10s
	bash .ci/fuzz.sh ./proxy/pgsql FuzzClassify 10s
	bash .ci/fuzz.sh ./proxy/pgsql FuzzSetting 10s
	bash .ci/fuzz.sh ./proxy/httpfront FuzzFraming $(FUZZTIME)
	bash .ci/fuzz.sh ./proxy/httpfront FuzzClassify 10s
	bash .ci/fuzz.sh ./proxy/httpfront FuzzRedact 10s
	bash .ci/fuzz.sh ./proxy/kubefront FuzzClassify 10s
	bash .ci/fuzz.sh ./proxy/kubefront FuzzFrameReader 10s
	bash .ci/fuzz.sh ./proxy/kubefront FuzzSPDYReader 10s
	bash .ci/fuzz.sh ./policy FuzzPathPattern 10s
	bash .ci/fuzz.sh ./configs FuzzParse 10s
	bash .ci/fuzz.sh ./audit FuzzDecodeLine 10s
	bash .ci/fuzz.sh ./audit FuzzEncode 10s

## bench: policy evaluation, audit append (with fsync) and encoding, SQL classification, one
## HTTP exchange through Portcullis's handler beside a bare reverse proxy, and statements
## through a real PostgreSQL session (BenchmarkSession: the allow path's allocations).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./policy ./audit ./proxy/pgsql ./proxy/httpfront ./proxy/pgwire

## bench-pg: pgbench (select-only simple/prepared c=1/4/16, tpcb-like c=1/8) against the
## database directly, a bare relay, PgBouncer and Portcullis, interleaved, with ratios.
## BENCH_SECONDS (5) per run, BENCH_ROUNDS (2); BENCH_OUT=FILE keeps the table.
bench-pg: servers
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || { \
		[ "$$(id -u)" = 0 ] || { echo "pgbouncer missing: sudo apt-get install -y pgbouncer"; exit 1; }; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; \
		service pgbouncer stop >/dev/null 2>&1 || true; }
	$(GO) test -tags benchpg -run '^TestBenchPG$$' -count=1 -v -timeout 60m ./proxy/pgwire | grep -v '^=== RUN\|^--- PASS\|^PASS'

## soak: two Portcullis processes over one Redis and PostgreSQL, SOAK_SESSIONS (200) SQL
## sessions for SOAK_DURATION (2m), reads and writes held and approved through the API;
## every statement accounted for in the audit logs, goroutines and memory flat, latency
## reported. Not part of make test.
soak: servers
	$(GO) test -tags soak -run '^TestSoak$$' -count=1 -v -timeout 90m ./cmd/portcullis | grep -v '^=== RUN'

## bench-pg-pinned: bench-pg with the proxies pinned to CPU 0 and PostgreSQL and pgbench to
## the other CPUs (taskset), so each proxy's throughput is its per-core efficiency.
bench-pg-pinned: servers
	@$(MAKE) --no-print-directory bench-pg BENCH_PIN=1

## bench-http: wrk sends a small GET and a 16 KiB POST at c=1/16/64 to the upstream directly, a
## bare httputil.ReverseProxy and Portcullis's HTTP front end, interleaved, with ratios and CPU
## per request. BENCH_SECONDS (5) per run, BENCH_ROUNDS (2); BENCH_OUT=FILE keeps the table.
bench-http:
	@command -v wrk >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "wrk missing: sudo apt-get install -y wrk"; exit 1; }; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(GO) test -tags benchhttp -run '^TestBenchHTTP$$' -count=1 -v -timeout 30m ./proxy/httpfront | grep -v '^=== RUN\|^--- PASS\|^PASS'

## bench-k8s: Kubernetes list requests through Portcullis against the API server directly
## and a bare reverse proxy (wrk; needs make kubernetes).
bench-k8s: kubernetes
	@command -v wrk >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "wrk missing: sudo apt-get install -y wrk"; exit 1; }; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(GO) test -tags benchk8s -run '^TestBenchK8s$$' -count=1 -v -timeout 30m ./proxy/kubefront | grep -v '^=== RUN\|^--- PASS\|^PASS'

## tools: everything the tests need: the system's servers, Vault, etcd and Kubernetes, Chromium and
## the OIDC provider, Helm for the chart's tests.
tools: servers vault kubernetes kubelet node browser helm otelcol

## otelcol: build the minimal OpenTelemetry Collector once (cached like Vault).
otelcol: $(OTELCOL)

$(OTELCOL):
	@echo "building the OpenTelemetry Collector $(OTELCOL_VERSION) into $(dir $(OTELCOL)) (once)"
	@mkdir -p $(dir $(OTELCOL))
	cd internal/tools/otelcol && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(OTELCOL).tmp . && mv $(OTELCOL).tmp $(OTELCOL)

## helm: build Helm from the module proxy once (cached like Vault); the chart tests run it.
helm: $(HELM)

$(HELM):
	@echo "building Helm $(HELM_VERSION) into $(dir $(HELM)) (once)"
	@mkdir -p $(dir $(HELM))
	cd /tmp && GOBIN=$(dir $(HELM)) CGO_ENABLED=0 $(GO) install -trimpath -ldflags='-s -w' helm.sh/helm/v4/cmd/helm@v$(HELM_VERSION)

## chart: lint the Helm chart and write deploy/helm/rendered/portcullis.yaml, its output with
## the default values, for those who apply manifests without Helm.
chart: $(HELM)
	$(HELM) lint --strict deploy/helm/portcullis
	@mkdir -p deploy/helm/rendered
	{ printf '%s\n' '# Rendered from deploy/helm/portcullis with its default values (make chart); apply with' \
		'# kubectl apply -n NAMESPACE -f deploy/helm/rendered/portcullis.yaml after editing the ConfigMap.'; \
		$(HELM) template portcullis deploy/helm/portcullis --namespace portcullis; } > deploy/helm/rendered/portcullis.yaml

## browser: Debian's Chromium for the console's browser tests, and the npm oidc-provider
## (web/testdata/oidc, from its lock file) they sign in through.
browser:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium fonts-liberation"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; install them (sudo apt-get install -y$$missing) or run as root"; exit 1; fi; \
		echo "installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@[ -f $(OIDC_DIR)/node_modules/.package-lock.json ] && cmp -s $(OIDC_DIR)/package-lock.json $(OIDC_DIR)/node_modules/.lock-copy || { \
		echo "installing the test OIDC provider (npm ci in $(OIDC_DIR))"; \
		cd $(OIDC_DIR) && npm ci --no-audit --no-fund --loglevel=error >/dev/null && cp package-lock.json node_modules/.lock-copy; }

## player: refresh the console's terminal player (web/static/player, committed so that a
## plain go build embeds it) from the npm version pinned in web/player.
player:
	cd web/player && npm ci --no-audit --no-fund --loglevel=error
	cp web/player/node_modules/asciinema-player/dist/bundle/asciinema-player.min.js \
		web/player/node_modules/asciinema-player/dist/bundle/asciinema-player.css \
		web/player/node_modules/asciinema-player/LICENSE web/static/player/

## servers: install PostgreSQL and Redis from the distribution when they are missing.
servers:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/sbin/rsyslogd ] || command -v rsyslogd >/dev/null || missing="$$missing rsyslog"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; install them (sudo apt-get install -y$$missing) or run as root"; exit 1; fi; \
		echo "installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		systemctl disable --now postgresql redis-server rsyslog >/dev/null 2>&1 || true; \
		service postgresql stop >/dev/null 2>&1 || true; service redis-server stop >/dev/null 2>&1 || true; \
		service rsyslog stop >/dev/null 2>&1 || true; \
	fi

## vault: build the pinned Vault server and its PostgreSQL and Kubernetes plugins once (about 5 minutes cold).
vault: $(VAULT) $(VAULT_PLUGIN) $(VAULT_K8S_STAMP) $(VAULT_K8S_AUTH_STAMP)

$(VAULT):
	@echo "building Vault $(VAULT_VERSION) into $(VAULT_DIR) (once; several minutes)"
	@mkdir -p $(VAULT_DIR)
	cd deploy/vault && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -tags minimal -trimpath -ldflags='-s -w' \
		-o $(VAULT_DIR)/vault.tmp github.com/hashicorp/vault
	mv $(VAULT_DIR)/vault.tmp $(VAULT)

$(VAULT_PLUGIN): $(VAULT)
	@mkdir -p $(VAULT_DIR)/plugins
	cd deploy/vault && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -trimpath -ldflags='-s -w' \
		-o $(VAULT_PLUGIN).tmp github.com/hashicorp/vault/plugins/database/postgresql/postgresql-database-plugin
	mv $(VAULT_PLUGIN).tmp $(VAULT_PLUGIN)

$(VAULT_K8S_STAMP): $(VAULT)
	@mkdir -p $(VAULT_DIR)/plugins
	cd deploy/vault && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -trimpath -ldflags='-s -w' \
		-o $(VAULT_K8S).tmp github.com/hashicorp/vault-plugin-secrets-kubernetes/cmd/vault-plugin-secrets-kubernetes
	mv $(VAULT_K8S).tmp $(VAULT_K8S)
	touch $@

# Built outside the plugin directory and moved in whole: a running dev Vault registers
# every file there.
$(VAULT_K8S_AUTH_STAMP): $(VAULT)
	@mkdir -p $(VAULT_DIR)/plugins $(VAULT_DIR)/build
	cd /tmp && CGO_ENABLED=0 GOBIN=$(VAULT_DIR)/build $(GO) install -trimpath -ldflags='-s -w' \
		github.com/hashicorp/vault-plugin-auth-kubernetes/cmd/vault-plugin-auth-kubernetes@v$(VAULT_K8S_AUTH_VERSION)
	mv $(VAULT_DIR)/build/vault-plugin-auth-kubernetes $(VAULT_K8S_AUTH)
	touch $@

## kubernetes: build the pinned etcd, kube-apiserver and kubectl once (several minutes cold),
## cached like Vault; the tests run a real control plane with them. `make kubelet` adds the
## node agent (1.5 GB of memory to build) that `make tools` builds for the exec tests.
kubernetes: $(ETCD) $(KUBE_DIR)/kube-apiserver $(KUBE_DIR)/kubectl

kubelet: $(KUBE_DIR)/kubelet

## node: what a test node runs besides the kubelet: containerd and runc, busybox (its image
## is built locally, nothing is pulled), the CNI plugins and iptables, from the distribution.
NODE_PACKAGES := containerd runc busybox-static containernetworking-plugins iptables
node:
	@missing=""; \
	command -v containerd >/dev/null || missing="$$missing containerd"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	[ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	[ -x /usr/lib/cni/bridge ] || missing="$$missing containernetworking-plugins"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; install them (sudo apt-get install -y$$missing) or run as root"; exit 1; fi; \
		echo "installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		systemctl disable --now containerd >/dev/null 2>&1 || true; service containerd stop >/dev/null 2>&1 || true; \
	fi

$(ETCD):
	@echo "building etcd $(ETCD_VERSION) into $(dir $(ETCD)) (once)"
	@mkdir -p $(dir $(ETCD))
	cd deploy/etcd && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -trimpath -ldflags='-s -w' -o $(ETCD).tmp go.etcd.io/etcd/server/v3
	mv $(ETCD).tmp $(ETCD)

$(KUBE_DIR)/%:
	@echo "building $* $(KUBE_VERSION) into $(KUBE_DIR) (once)"
	@mkdir -p $(KUBE_DIR)
	cd deploy/kubernetes && CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -trimpath \
		-ldflags='-s -w -X k8s.io/component-base/version.gitVersion=v$(KUBE_VERSION)' -o $@.tmp k8s.io/kubernetes/cmd/$*
	mv $@.tmp $@

check: fmt vet

fmt:
	gofmt -l -w .

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .demo
