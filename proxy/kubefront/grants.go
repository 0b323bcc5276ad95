package kubefront

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/portcullis/portcullis/audit"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
)

// TokenBroker mints the service-account tokens that requests allowed by an elevation grant
// or a break-glass session run with (elevation/vault's Broker, from Vault's Kubernetes
// secrets engine), and revokes them.
type TokenBroker interface {
	KubeToken(ctx context.Context, resource, role string, notAfter time.Time) (elevation.Credentials, error)
	Release(ctx context.Context, c elevation.Credentials) error
}

// grantWatch is how often a grant's token checks that its grant still holds.
const grantWatch = 250 * time.Millisecond

// grantToken is the token of one grant on one resource: minted on the grant's first
// request, shared by the rest, revoked when the grant ends (or is revoked early).
type grantToken struct {
	ready chan struct{}
	cred  elevation.Credentials
	err   error
}

// grantFor is the grant whose role the request's credentials come from: the break-glass
// session, or the caller's active elevation grant of role.
func (x *exchange) grantFor(role string) (*elevation.Request, error) {
	if role == configs.BreakGlassCredentials {
		if x.v.BreakGlass == nil {
			return nil, errors.New("no break-glass session")
		}
		return x.v.BreakGlass, nil
	}
	grants, err := x.srv.Gate.Approvals.Grants(x.r.Context(), x.who.User, x.srv.Now())
	if err != nil {
		return nil, err
	}
	for _, g := range grants {
		if g.Type == elevation.TypeElevation && g.Artifact.Role == role {
			return g, nil
		}
	}
	return nil, errors.New("the grant of role " + role + " is no longer active")
}

// grantCredential returns the token of grant, minting it on first use.
func (s *Server) grantCredential(ctx context.Context, grant *elevation.Request, role string) (elevation.Credentials, error) {
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = map[string]*grantToken{}
	}
	gt := s.tokens[grant.ID]
	if gt == nil {
		gt = &grantToken{ready: make(chan struct{})}
		s.tokens[grant.ID] = gt
		s.mu.Unlock()
		gt.cred, gt.err = s.Tokens.KubeToken(ctx, s.Resource.Name, role, grant.NotAfter)
		close(gt.ready)
		if gt.err != nil {
			s.mu.Lock()
			delete(s.tokens, grant.ID) // the next request tries again
			s.mu.Unlock()
			return gt.cred, gt.err
		}
		s.Audit.Enqueue(&audit.Event{Type: audit.TypeKubeTokenMinted, Actor: "portcullis", Subject: grant.Requester.User, Resource: s.Resource.Name,
			Action: role, Result: "ok", BreakGlass: breakGlassID(grant),
			Details: map[string]any{"grant": grant.ID, "service_account": gt.cred.Username, "not_after": grant.NotAfter.Format(time.RFC3339)}})
		s.wg.Add(1)
		go s.watchGrant(grant, gt)
		return gt.cred, nil
	}
	s.mu.Unlock()
	select {
	case <-gt.ready:
		return gt.cred, gt.err
	case <-ctx.Done():
		return elevation.Credentials{}, ctx.Err()
	}
}

// watchGrant revokes a grant's token once the grant no longer holds: at its end, or when
// it is revoked, or when the server shuts down.
func (s *Server) watchGrant(grant *elevation.Request, gt *grantToken) {
	t := time.NewTicker(grantWatch)
	defer t.Stop()
	why := "the grant ended"
	for ended := false; !ended; {
		select {
		case <-s.stop:
			ended, why = true, "Portcullis stopped"
			continue
		case <-t.C:
		}
		now := s.Now()
		grants, err := s.Gate.Approvals.Grants(context.Background(), grant.Requester.User, now)
		switch {
		case !now.Before(grant.NotAfter):
			ended = true
		case err == nil:
			ended = !slices.ContainsFunc(grants, func(g *elevation.Request) bool { return g.ID == grant.ID })
		}
	}
	s.mu.Lock()
	delete(s.tokens, grant.ID)
	s.mu.Unlock()
	ev := &audit.Event{Type: audit.TypeKubeTokenRevoked, Actor: "portcullis", Subject: grant.Requester.User, Resource: s.Resource.Name,
		Action: grant.Artifact.Role, Result: "ok", Reason: why, BreakGlass: breakGlassID(grant),
		Details: map[string]any{"grant": grant.ID, "service_account": gt.cred.Username}}
	// Revoke until Vault confirms; the lease's own expiry (at least the grant's end, or
	// ten minutes) is the backstop.
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.Tokens.Release(ctx, gt.cred)
		cancel()
		if err == nil {
			break
		}
		if attempt == 5 {
			s.Log.Error("could not revoke a grant's service-account token; it ends with its lease", "grant", grant.ID, "service_account", gt.cred.Username, "err", err)
			ev.Result, ev.Reason = "error", why+"; revocation failed: "+err.Error()
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
	s.Audit.Enqueue(ev)
	s.wg.Done()
}

func breakGlassID(r *elevation.Request) string {
	if r.Type == elevation.TypeBreakGlass {
		return r.ID
	}
	return ""
}

// untilGrantEnds calls end once grant no longer holds (its end, or an early revocation,
// or the server stopping); stop ends the watch.
func (s *Server) untilGrantEnds(grant *elevation.Request, end func(why string)) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(grantWatch)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-s.stop:
				end("Portcullis stopped")
				return
			case <-t.C:
			}
			now := s.Now()
			if !now.Before(grant.NotAfter) {
				end(grant.Type + " " + grant.ID + " ended")
				return
			}
			grants, err := s.Gate.Approvals.Grants(context.Background(), grant.Requester.User, now)
			if err == nil && !slices.ContainsFunc(grants, func(g *elevation.Request) bool { return g.ID == grant.ID }) {
				end(grant.Type + " " + grant.ID + " ended")
				return
			}
		}
	}()
	return func() { close(done) }
}
