package elevation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// ErrNotFound means there is no request with that id.
var ErrNotFound = errors.New("no such request")

// Store keeps approval requests. Update applies a change atomically: fn sees the current
// request and either changes it or returns an error, in which case nothing is stored.
type Store interface {
	Create(ctx context.Context, r *Request) error
	Get(ctx context.Context, id string) (*Request, error)
	List(ctx context.Context) ([]*Request, error)
	Update(ctx context.Context, id string, fn func(*Request) error) (*Request, error)
}

// FileStore is the embedded store: requests in memory, persisted to one JSON file that is
// rewritten atomically (write, fsync, rename) on every change, so a restart loses nothing.
type FileStore struct {
	path    string
	mu      sync.Mutex
	reqs    map[string]*Request
	revoked map[string]time.Time // ended console sessions, by key; loaded on first use
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens (or creates) the embedded store in dir.
func OpenFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("could not create the store directory: %w", err)
	}
	s := &FileStore{path: filepath.Join(dir, "approvals.json"), reqs: map[string]*Request{}}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("could not read the store: %w", err)
	default:
		var list []*Request
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("the store file %s is corrupt: %w", s.path, err)
		}
		for _, r := range list {
			s.reqs[r.ID] = r
		}
	}
	return s, nil
}

func (s *FileStore) persist() error {
	list := make([]*Request, 0, len(s.reqs))
	for _, r := range s.reqs {
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].CreatedAt.Before(list[j].CreatedAt) })
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return writeFileSync(s.path, b)
}

// writeFileSync replaces path with b atomically and durably: write, fsync, rename.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("could not write the store: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("could not write the store: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("could not sync the store: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Create stores a new request.
func (s *FileStore) Create(_ context.Context, r *Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.reqs[r.ID]; dup {
		return fmt.Errorf("request %s exists", r.ID)
	}
	s.reqs[r.ID] = r.clone()
	if err := s.persist(); err != nil {
		delete(s.reqs, r.ID)
		return err
	}
	return nil
}

// Get returns a copy of the request.
func (s *FileStore) Get(_ context.Context, id string) (*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reqs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return r.clone(), nil
}

// List returns copies of every request, oldest first.
func (s *FileStore) List(_ context.Context) ([]*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Request, 0, len(s.reqs))
	for _, r := range s.reqs {
		out = append(out, r.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Update changes a request atomically and durably.
func (s *FileStore) Update(_ context.Context, id string, fn func(*Request) error) (*Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.reqs[id]
	if !ok {
		return nil, ErrNotFound
	}
	next := cur.clone()
	if err := fn(next); err != nil {
		return nil, err
	}
	s.reqs[id] = next
	if err := s.persist(); err != nil {
		s.reqs[id] = cur
		return nil, err
	}
	return next.clone(), nil
}
