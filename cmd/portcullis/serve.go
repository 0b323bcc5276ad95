package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/audit/otlplog"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/redisstore"
	"github.com/portcullis/portcullis/elevation/vault"
	"github.com/portcullis/portcullis/internal/signed"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy/gate"
	"github.com/portcullis/portcullis/proxy/httpfront"
	"github.com/portcullis/portcullis/proxy/identity"
	"github.com/portcullis/portcullis/proxy/kubefront"
	"github.com/portcullis/portcullis/proxy/pgwire"
	"github.com/portcullis/portcullis/web"
)

func serveCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the Portcullis server",
		Long: "Serve loads the configuration (refusing to start if anything in it is wrong), opens the\n" +
			"audit log, and serves the API and console on server.listen until interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			cfg, err := configs.Load(cfgPath)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				fmt.Fprintln(cmd.ErrOrStderr(), "portcullis: refusing to start with an invalid configuration")
				return exitError{1}
			}
			return serve(ctx, cfg, logger, func(a listening) {
				logger.Info("portcullis serving", "listen", a.api, "postgres_listen", a.postgres, "http_listen", a.http, "kubernetes_listen", a.kube, "public_url", cfg.Server.PublicURL, "policy_snapshot", cfg.Engine.Snapshot())
			})
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	cmd.MarkFlagRequired("config")
	return cmd
}

// loud selects the events notification sinks get: everything about break-glass, and
// alerts (a statement mismatch).
func loud(ev *audit.Event) bool {
	return ev.BreakGlass != "" || ev.Alert != "" || strings.HasPrefix(ev.Type, "breakglass.")
}

// addSinks mirrors committed events to the configured audit.sinks. The returned func
// closes what they opened, once the log is closed.
func addSinks(cfg *configs.Config, log *audit.Log, host string) (func(), error) {
	var closers []io.Closer
	done := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	for _, sk := range cfg.Audit.Sinks {
		var want func(*audit.Event) bool
		if sk.Events == "loud" {
			want = loud
		}
		switch sk.Kind {
		case "syslog":
			u, _ := url.Parse(sk.Address) // validated
			s := &audit.Syslog{Network: u.Scheme, Addr: u.Host, AppName: sk.AppName, Hostname: host, Want: want}
			if u.Scheme == "tls" && sk.CAFile != "" {
				pool, err := caPool(sk.CAFile)
				if err != nil {
					done()
					return nil, fmt.Errorf("audit sink %s: %w", sk.Address, err)
				}
				s.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: u.Hostname()}
			}
			closers = append(closers, s)
			log.AddSink(s)
		case "jsonl":
			w, label := io.Writer(os.Stdout), "standard output"
			if sk.Path != "-" {
				f, err := os.OpenFile(sk.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
				if err != nil {
					done()
					return nil, fmt.Errorf("audit sink: %w", err)
				}
				closers = append(closers, f)
				w, label = f, sk.Path
			}
			log.AddSink(&audit.JSONLines{Label: label, W: w, Want: want})
		case "otlp":
			tc, err := clientTLS(sk.CAFile)
			if err != nil {
				done()
				return nil, fmt.Errorf("audit sink %s: %w", sk.Endpoint, err)
			}
			s, err := otlplog.New(context.Background(), otlplog.Options{Endpoint: sk.Endpoint, Headers: sk.Headers, TLS: tc, Want: want,
				Replica: host, Version: version, Outbox: cfg.Audit.Dir})
			if err != nil {
				done()
				return nil, err
			}
			closers = append(closers, s)
			log.AddSink(s)
		}
	}
	return done, nil
}

// sweepGrants ends expired elevation grants every second and audits each ending.
func sweepGrants(ctx context.Context, a *elevation.Approvals, log *audit.Log, logger *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ended, err := a.EndExpired(ctx)
		if err != nil {
			logger.Error("grant sweep failed", "err", err)
		}
		for _, r := range ended {
			ev := &audit.Event{Type: audit.TypeElevationEnded, Actor: "portcullis", Subject: r.Requester.User, Resource: r.Artifact.Resource,
				Action: r.Artifact.Role, Result: elevation.StateEnded, Details: map[string]any{"approval": r.ID, "not_after": r.NotAfter.Format(time.RFC3339)}}
			if r.Type == elevation.TypeBreakGlass {
				ev.Type, ev.BreakGlass = audit.TypeBreakGlassEnded, r.ID
			}
			log.Enqueue(ev)
		}
	}
}

// listening holds the addresses the server accepts connections on.
type listening struct {
	api, postgres, http string
	kube                []string // one per kubernetes resource, in configuration order
}

// serve runs the server for cfg until ctx ends. ready is called with the listen addresses
// once the server accepts connections.
func serve(ctx context.Context, cfg *configs.Config, logger *slog.Logger, ready func(listening)) error {
	settings := settingsOf(cfg) // as loaded: what a reload may not change
	replica := cfg.Audit.Replica
	if replica == "" {
		replica, _ = os.Hostname()
	}
	log, err := audit.Open(audit.Options{Dir: cfg.Audit.Dir, SegmentMaxBytes: cfg.Audit.SegmentMaxBytes, NoSync: cfg.Audit.NoSync, Logger: logger, Replica: replica})
	if err != nil {
		return fmt.Errorf("could not open the audit log: %w", err)
	}
	closeSinks := func() {}
	defer func() {
		log.Close() // flushes the sinks, which close after it
		closeSinks()
	}()
	auth, err := identity.New(cfg)
	if err != nil {
		return err
	}
	for _, w := range cfg.Notify.Webhooks {
		log.AddSink(&audit.Webhook{URL: w.URL, Secret: w.Secret, Format: w.Format, Want: loud, Link: cfg.Server.RequestURL, Outbox: cfg.Audit.Dir})
	}
	metrics := web.NewEventMetrics() // counted from the committed events
	log.AddObserver(metrics)
	cs, err := addSinks(cfg, log, replica)
	if err != nil {
		return err
	}
	closeSinks = cs
	tracer, stopTracing, err := startTracing(ctx, cfg, replica, logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	// What /readyz checks: a replica takes traffic only while it can write its audit log
	// and reach the shared store and Vault.
	var draining atomic.Bool // from the signal on: the load balancer should stop sending
	checks := []web.ReadyCheck{
		{Name: "shutdown", Check: func(context.Context) error {
			if draining.Load() {
				return errors.New("shutting down")
			}
			return nil
		}},
		{Name: "audit", Check: func(context.Context) error { return log.Err() }},
	}
	var store elevation.Store
	if cfg.Store.Redis != "" || cfg.Store.Sentinel != nil || cfg.Store.Cluster != nil {
		redisstore.LogTo(logger)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var rs *redisstore.Store
		switch {
		case cfg.Store.Cluster != nil:
			rs, err = redisstore.OpenCluster(sctx, cfg.Store.Cluster, "portcullis:")
		case cfg.Store.Sentinel != nil:
			rs, err = redisstore.OpenSentinel(sctx, cfg.Store.Sentinel, "portcullis:")
		default:
			rs, err = redisstore.Open(sctx, cfg.Store.Redis, "portcullis:")
		}
		cancel()
		if err != nil {
			return err
		}
		defer rs.Close()
		store = rs
		checks = append(checks, web.ReadyCheck{Name: "redis", Check: rs.Ping})
	} else if store, err = elevation.OpenFileStore(cfg.Store.Path); err != nil {
		return err
	}
	approvals := elevation.NewApprovals(store, nil)
	defer approvals.Close()
	go sweepGrants(ctx, approvals, log, logger)
	// Audit before act: a server whose audit log cannot be written does not start.
	if err := log.Append(ctx, &audit.Event{Type: audit.TypeServerStarted, Actor: "portcullis", PolicyHash: cfg.Engine.Snapshot(),
		Details: map[string]any{"config": cfg.Path, "listen": cfg.Server.Listen, "version": version}}); err != nil {
		return fmt.Errorf("could not write the audit log: %w", err)
	}
	// One key signs the console's cookies and the tickets that carry a console sign-in to
	// the admin APIs of the HTTP front end.
	keys := signed.New(cfg.Console.SessionKey)
	static := elevation.NewStaticBroker(cfg)
	var (
		broker  elevation.CredentialBroker = static
		headers elevation.HeaderBroker     = static
		tokens  kubefront.TokenBroker      // grant tokens from Vault's Kubernetes engine
	)
	if cfg.Vault.Address != "" {
		vctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		vb, err := vault.NewBroker(vctx, cfg, logger)
		cancel()
		if err != nil {
			return err
		}
		defer vb.Close()
		broker, headers, tokens = vb, vb, vb
		checks = append(checks, web.ReadyCheck{Name: "vault", Check: vb.Health})
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("could not listen on %s: %w", cfg.Server.Listen, err)
	}
	errc := make(chan error, 2+len(cfg.Resources))
	addrs := listening{api: ln.Addr().String()}
	var pg *pgwire.Server
	if cfg.Server.PostgresListen != "" {
		host, _, _ := net.SplitHostPort(cfg.Server.PostgresListen)
		tlsCfg, err := pgwire.TLSConfig(cfg.Server.TLS, host)
		if err != nil {
			ln.Close()
			return err
		}
		pln, err := net.Listen("tcp", cfg.Server.PostgresListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("could not listen on %s: %w", cfg.Server.PostgresListen, err)
		}
		addrs.postgres = pln.Addr().String()
		pg = &pgwire.Server{Config: cfg, Auth: auth, Broker: broker, Approvals: approvals, Audit: log, Log: logger, TLS: tlsCfg,
			MaxMessageSize: cfg.Server.MaxMessageBytes, StartupTimeout: cfg.Server.StartupTimeout.D(), Tracer: tracer}
		go func() { errc <- pg.Serve(pln) }()
		defer pg.Close()
	}
	var hfront *httpfront.Server
	if cfg.Server.HTTPListen != "" {
		hln, err := net.Listen("tcp", cfg.Server.HTTPListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("could not listen on %s: %w", cfg.Server.HTTPListen, err)
		}
		addrs.http = hln.Addr().String()
		front := &httpfront.Server{Config: cfg, Auth: auth, Audit: log, Log: logger, Credentials: headers, Keys: keys,
			Gate: &gate.Gate{Config: cfg, Approvals: approvals, Audit: log, Log: logger, Tracer: tracer}}
		hfront = front
		go func() { errc <- front.Serve(hln) }()
	}
	// One Kubernetes front end per kubernetes resource, each on its own https listener.
	kubes := map[string]*kubefront.Server{}
	for i := range cfg.Resources {
		res := &cfg.Resources[i]
		if res.Kind != "kubernetes" {
			continue
		}
		kln, err := net.Listen("tcp", res.Kubernetes.Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("could not listen on %s for %s: %w", res.Kubernetes.Listen, res.Name, err)
		}
		if _, port, _ := net.SplitHostPort(res.Kubernetes.Listen); port == "0" && res.Kubernetes.PublicURL == "" {
			res.Kubernetes.PublicURL = "https://" + kln.Addr().String() // kubeconfigs name the port chosen
		}
		front := &kubefront.Server{Config: cfg, Resource: res, Auth: auth, Audit: log, Log: logger, Credentials: headers, Tokens: tokens,
			Gate: &gate.Gate{Config: cfg, Approvals: approvals, Audit: log, Log: logger, Tracer: tracer}}
		if _, err := front.CAPEM(); err != nil {
			kln.Close()
			ln.Close()
			return fmt.Errorf("resource %s: %w", res.Name, err)
		}
		kubes[res.Name] = front
		addrs.kube = append(addrs.kube, kln.Addr().String())
		go func() { errc <- front.Serve(kln) }()
	}
	ws := &web.Server{Config: cfg, Auth: auth, Approvals: approvals, Audit: log, Log: logger, Keys: keys, Ready: checks, Metrics: metrics}
	if len(kubes) > 0 {
		ws.KubeCA = func(name string) ([]byte, error) {
			if k := kubes[name]; k != nil {
				return k.CAPEM()
			}
			return nil, fmt.Errorf("no kubernetes resource %q is served", name)
		}
	}
	if pg != nil {
		ws.ClassifySQL = pg.Classify // the decisions API decides SQL as the proxy does
	}
	srv := &http.Server{
		Handler:           ws.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Requests' contexts end at shutdown, so the console's event streams close instead of
	// holding Shutdown until its timeout.
	base, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv.BaseContext = func(net.Listener) context.Context { return base }
	srv.RegisterOnShutdown(endStreams)
	go func() {
		if cfg.Server.TLS.CertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.Server.TLS.CertFile, cfg.Server.TLS.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	// SIGHUP: the policy set is read again (see reload).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(ctx, cfg, settings, log, logger)
			}
		}
	}()
	ready(addrs)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	// Drain: the front ends at once, each session or request ending when done (up to
	// server.shutdown_timeout); the API and console last, so that approvers keep deciding
	// for statements waiting on other replicas until then.
	draining.Store(true)
	logger.Info("shutting down: draining sessions", "timeout", cfg.Server.ShutdownTimeout.D())
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	var fronts sync.WaitGroup
	if pg != nil {
		fronts.Go(func() {
			if err := pg.Shutdown(shutdown); err != nil {
				logger.Warn("PostgreSQL sessions still busy at the shutdown deadline were cut", "err", err)
			}
		})
	}
	if hfront != nil {
		fronts.Go(func() { hfront.Shutdown(shutdown) })
	}
	for _, k := range kubes {
		fronts.Go(func() { k.Shutdown(shutdown) })
	}
	fronts.Wait()
	last, cancelLast := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelLast()
	srv.Shutdown(last)
	return log.Append(last, &audit.Event{Type: audit.TypeServerStopped, Actor: "portcullis", PolicyHash: cfg.Engine.Snapshot()})
}

// reload reads the configuration file again and, when what changed is the policies alone
// (policies, policy_files and the files they name, defaults), puts the new policy set in
// force for every decision from now on; sessions stay, and approvals given under the old
// set are refused at use, as after any policy change. A file that does not load, or a
// change to anything else (resources, identity, listeners, ...: those need a restart), is
// refused and the set in force kept. Either way the outcome is audited.
func reload(ctx context.Context, cfg *configs.Config, settings []byte, log *audit.Log, logger *slog.Logger) error {
	before := cfg.Engine.Snapshot()
	ev := &audit.Event{Type: audit.TypePoliciesReloaded, Actor: "portcullis", PolicyHash: before, Details: map[string]any{"config": cfg.Path, "before": before}}
	next, err := configs.Load(cfg.Path)
	if err == nil {
		err = onlyPoliciesDiffer(settings, next)
	}
	if err != nil {
		ev.Result, ev.Reason = "refused", err.Error()
		if aerr := log.Append(ctx, ev); aerr != nil {
			logger.Error("could not audit a refused reload", "err", aerr)
		}
		logger.Error("reload refused; the policies in force stay", "err", err)
		return err
	}
	// Audit before act: the new set is in force only once the log says so.
	ev.Result, ev.PolicyHash, ev.Details["after"] = "ok", next.Engine.Snapshot(), next.Engine.Snapshot()
	if err := log.Append(ctx, ev); err != nil {
		logger.Error("reload refused: the audit log cannot be written", "err", err)
		return err
	}
	cfg.Engine.Replace(next.Engine)
	logger.Info("policies reloaded", "before", before, "after", cfg.Engine.Snapshot())
	return nil
}

// settingsOf is the configuration without its policy set, as YAML: what a reload may not
// change. Taken as loaded, before serve fills in what it learns (a listener's port). nil
// when it cannot be written out: no reload can then be shown to change only policies.
func settingsOf(c *configs.Config) []byte {
	cp := *c
	cp.Policies, cp.PolicyFiles, cp.Defaults = nil, nil, policy.Defaults{}
	b, err := yaml.Marshal(&cp)
	if err != nil {
		return nil
	}
	return b
}

// onlyPoliciesDiffer reports an error naming the top-level keys that changed besides the
// policy set between the settings in force and next.
func onlyPoliciesDiffer(settings []byte, next *configs.Config) error {
	b := settingsOf(next)
	if settings == nil || b == nil {
		return errors.New("the configuration cannot be compared with the one in force: restart Portcullis to apply it")
	}
	if bytes.Equal(settings, b) {
		return nil
	}
	var keys []string
	var ma, mb map[string]any
	yaml.Unmarshal(settings, &ma)
	yaml.Unmarshal(b, &mb)
	for k := range mb {
		if !reflect.DeepEqual(ma[k], mb[k]) {
			keys = append(keys, k)
		}
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return fmt.Errorf("more than the policies changed (%s): restart Portcullis to apply that", strings.Join(keys, ", "))
}
