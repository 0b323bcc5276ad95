package elevation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SessionRevoker is a store that ends console sessions for every replica that shares it:
// a session signed out (or ended by an administrator) is refused everywhere until its own
// expiry, even when someone kept a copy of its cookie.
type SessionRevoker interface {
	RevokeSession(ctx context.Context, id string, until time.Time) error
	SessionRevoked(ctx context.Context, id string) (bool, error)
}

// errNoRevocation: the store cannot end sessions (every store of this package can).
var errNoRevocation = errors.New("the approval store cannot end console sessions")

// RevokeSession ends the console session id everywhere until its expiry.
func (a *Approvals) RevokeSession(ctx context.Context, id string, until time.Time) error {
	r, ok := a.store.(SessionRevoker)
	if !ok {
		return errNoRevocation
	}
	return r.RevokeSession(ctx, sessionKey(id), until)
}

// SessionRevoked reports whether the console session id was ended.
func (a *Approvals) SessionRevoked(ctx context.Context, id string) (bool, error) {
	r, ok := a.store.(SessionRevoker)
	if !ok {
		return false, errNoRevocation
	}
	return r.SessionRevoked(ctx, sessionKey(id))
}

// sessionKey is what stores keep of a session id: its hash, so that the store holds
// nothing a cookie could be made from.
func sessionKey(id string) string {
	sum := sha256.Sum256([]byte("portcullis-session\x00" + id))
	return hex.EncodeToString(sum[:16])
}

// RevokeSession records the session as ended until until, durably.
func (s *FileStore) RevokeSession(_ context.Context, key string, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadRevoked(); err != nil {
		return err
	}
	now := time.Now()
	for k, t := range s.revoked {
		if t.Before(now) {
			delete(s.revoked, k)
		}
	}
	s.revoked[key] = until
	b, err := json.Marshal(s.revoked)
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(filepath.Dir(s.path), "revoked_sessions.json"), b)
}

// SessionRevoked reports whether the session was ended.
func (s *FileStore) SessionRevoked(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadRevoked(); err != nil {
		return false, err
	}
	until, ok := s.revoked[key]
	return ok && time.Now().Before(until), nil
}

// loadRevoked reads the revoked sessions once. s.mu is held.
func (s *FileStore) loadRevoked() error {
	if s.revoked != nil {
		return nil
	}
	s.revoked = map[string]time.Time{}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(s.path), "revoked_sessions.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		s.revoked = nil
		return fmt.Errorf("could not read the revoked sessions: %w", err)
	}
	if err := json.Unmarshal(b, &s.revoked); err != nil {
		s.revoked = nil
		return fmt.Errorf("the revoked sessions file is corrupt: %w", err)
	}
	return nil
}
