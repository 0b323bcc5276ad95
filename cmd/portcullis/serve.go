package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
	"github.com/portcullis/portcullis/elevation/redisstore"
	"github.com/portcullis/portcullis/elevation/vault"
	"github.com/portcullis/portcullis/internal/signed"
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
	replica := cfg.Audit.Replica
	if replica == "" {
		replica, _ = os.Hostname()
	}
	log, err := audit.Open(audit.Options{Dir: cfg.Audit.Dir, SegmentMaxBytes: cfg.Audit.SegmentMaxBytes, NoSync: cfg.Audit.NoSync, Logger: logger, Replica: replica})
	if err != nil {
		return fmt.Errorf("could not open the audit log: %w", err)
	}
	defer log.Close()
	auth, err := identity.New(cfg)
	if err != nil {
		return err
	}
	for _, w := range cfg.Notify.Webhooks {
		log.AddSink(&audit.Webhook{URL: w.URL, Secret: w.Secret, Format: w.Format, Want: loud, Link: cfg.Server.RequestURL})
	}
	// What /readyz checks: a replica takes traffic only while it can write its audit log
	// and reach the shared store and Vault.
	checks := []web.ReadyCheck{{Name: "audit", Check: func(context.Context) error { return log.Err() }}}
	var store elevation.Store
	if cfg.Store.Redis != "" || cfg.Store.Sentinel != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var rs *redisstore.Store
		if cfg.Store.Sentinel != nil {
			rs, err = redisstore.OpenSentinel(sctx, cfg.Store.Sentinel, "portcullis:")
		} else {
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
			MaxMessageSize: cfg.Server.MaxMessageBytes, StartupTimeout: cfg.Server.StartupTimeout.D()}
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
			Gate: &gate.Gate{Config: cfg, Approvals: approvals, Audit: log, Log: logger}}
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
			Gate: &gate.Gate{Config: cfg, Approvals: approvals, Audit: log, Log: logger}}
		if _, err := front.CAPEM(); err != nil {
			kln.Close()
			ln.Close()
			return fmt.Errorf("resource %s: %w", res.Name, err)
		}
		kubes[res.Name] = front
		addrs.kube = append(addrs.kube, kln.Addr().String())
		go func() { errc <- front.Serve(kln) }()
	}
	ws := &web.Server{Config: cfg, Auth: auth, Approvals: approvals, Audit: log, Log: logger, Keys: keys, Ready: checks}
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
	ready(addrs)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	if hfront != nil {
		hfront.Shutdown(shutdown)
	}
	for _, k := range kubes {
		k.Shutdown(shutdown)
	}
	if pg != nil {
		pg.Close()
	}
	return log.Append(shutdown, &audit.Event{Type: audit.TypeServerStopped, Actor: "portcullis", PolicyHash: cfg.Engine.Snapshot()})
}
