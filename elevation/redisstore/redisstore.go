// Package redisstore keeps approval requests, grants and revoked console sessions in
// Redis, so that every Portcullis replica sharing it sees the same ones, and hears of each
// change through pub/sub.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/elevation"
)

// unavailable wraps a Redis error; redis.Nil and transaction conflicts are not outages.
func unavailable(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) {
		return err
	}
	return fmt.Errorf("%w: %v", elevation.ErrStoreUnavailable, err)
}

// Store keeps approval requests in Redis, one JSON value per request under
// prefix+"req:"+id and an index set, so that every Portcullis replica sharing the Redis sees
// the same requests. Update is atomic across replicas (WATCH/MULTI, retried on conflict).
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ elevation.Store = (*Store)(nil)

// Open connects to the Redis at url (redis://, rediss://) and checks it answers.
func Open(ctx context.Context, url, prefix string) (*Store, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("store.redis: %w", err)
	}
	// Fail fast in an outage: statements waiting to be recorded should hear at once.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries = 2*time.Second, 2*time.Second, 2*time.Second, 1
	return open(ctx, redis.NewClient(opt), prefix)
}

// OpenSentinel connects to the Redis primary the sentinels name, follows it across
// failovers, and checks it answers.
func OpenSentinel(ctx context.Context, sn *configs.RedisSentinel, prefix string) (*Store, error) {
	opt := &redis.FailoverOptions{
		MasterName: sn.Master, SentinelAddrs: sn.Addrs,
		Username: sn.Username, Password: sn.Password, SentinelUsername: sn.SentinelUsername, SentinelPassword: sn.SentinelPassword, DB: sn.DB,
		// As Open's, but with retries: during a failover the first attempt may reach the
		// old primary, and the client asks the sentinels again before the next.
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: 3,
	}
	if sn.TLS {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return open(ctx, redis.NewFailoverClient(opt), prefix)
}

// OpenCluster connects to a Redis Cluster through the nodes named. Every key Portcullis
// keeps carries one hash tag (the prefix's), so that they share a slot: an update's
// transaction spans a request, its index and its grant.
func OpenCluster(ctx context.Context, cl *configs.RedisCluster, prefix string) (*Store, error) {
	opt := &redis.ClusterOptions{Addrs: cl.Addrs, Username: cl.Username, Password: cl.Password,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRedirects: 3}
	if cl.TLS {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if prefix == "" {
		prefix = "portcullis:"
	}
	return open(ctx, redis.NewClusterClient(opt), "{"+strings.TrimSuffix(prefix, ":")+"}:")
}

func open(ctx context.Context, rdb redis.UniversalClient, prefix string) (*Store, error) {
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("could not reach Redis: %w", err)
	}
	if prefix == "" {
		prefix = "portcullis:"
	}
	return &Store{rdb: rdb, prefix: prefix}, nil
}

// Close closes the connection pool.
func (s *Store) Close() error { return s.rdb.Close() }

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

func (s *Store) key(id string) string { return s.prefix + "req:" + id }
func (s *Store) index() string        { return s.prefix + "reqs" }
func (s *Store) channel() string      { return s.prefix + "changed" }
func (s *Store) grantKey(id string) string {
	return s.prefix + "grant:" + id
}
func (s *Store) grantIndex() string { return s.prefix + "grants" }

// ActiveGrants returns the elevation requests whose grants hold now. Each active grant
// is kept under its own key whose TTL is the grant's remaining life, so Redis itself
// forgets a grant at its not_after, whatever happens to Portcullis.
func (s *Store) ActiveGrants(ctx context.Context, now time.Time) ([]*elevation.Request, error) {
	ids, err := s.rdb.SMembers(ctx, s.grantIndex()).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	var out []*elevation.Request
	for _, id := range ids {
		b, err := s.rdb.Get(ctx, s.grantKey(id)).Bytes()
		if errors.Is(err, redis.Nil) {
			s.rdb.SRem(ctx, s.grantIndex(), id) // expired: Redis already forgot it
			continue
		}
		if err != nil {
			return nil, unavailable(err)
		}
		r := &elevation.Request{}
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("grant %s in Redis is corrupt: %w", id, err)
		}
		if r.ActiveGrant(now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Changes returns the ids of requests changed by any replica, as Redis publishes them,
// until ctx ends. Approvals uses it to wake waiters at once.
func (s *Store) Changes(ctx context.Context) <-chan string {
	out := make(chan string, 64)
	sub := s.rdb.Subscribe(ctx, s.channel())
	go func() {
		defer close(out)
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- m.Payload:
				default: // a slow consumer falls back on its re-check
				}
			}
		}
	}()
	return out
}

// Create stores a new request.
func (s *Store) Create(ctx context.Context, r *elevation.Request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ok, err := s.rdb.SetNX(ctx, s.key(r.ID), b, 0).Result()
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		return fmt.Errorf("request %s exists", r.ID)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, s.index(), r.ID)
		if r.Type != elevation.TypeStatement && r.State == elevation.StateApproved && !r.NotAfter.IsZero() {
			// Granted at creation (break-glass at a low tier): the grant key too.
			p.SetArgs(ctx, s.grantKey(r.ID), b, redis.SetArgs{ExpireAt: r.NotAfter})
			p.SAdd(ctx, s.grantIndex(), r.ID)
		}
		p.Publish(ctx, s.channel(), r.ID)
		return nil
	})
	return unavailable(err)
}

// Get returns the request.
func (s *Store) Get(ctx context.Context, id string) (*elevation.Request, error) {
	b, err := s.rdb.Get(ctx, s.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, elevation.ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	r := &elevation.Request{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("request %s in Redis is corrupt: %w", id, err)
	}
	return r, nil
}

// List returns every request, oldest first.
func (s *Store) List(ctx context.Context) ([]*elevation.Request, error) {
	ids, err := s.rdb.SMembers(ctx, s.index()).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]*elevation.Request, 0, len(ids))
	for _, id := range ids {
		r, err := s.Get(ctx, id)
		if errors.Is(err, elevation.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED)
}

// Update changes a request atomically: if another replica changes it meanwhile, fn runs
// again on the new value.
func (s *Store) Update(ctx context.Context, id string, fn func(*elevation.Request) error) (*elevation.Request, error) {
	key := s.key(id)
	for range 50 {
		var out *elevation.Request
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) {
				return elevation.ErrNotFound
			}
			if err != nil {
				return err
			}
			r := &elevation.Request{}
			if err := json.Unmarshal(b, r); err != nil {
				return fmt.Errorf("request %s in Redis is corrupt: %w", id, err)
			}
			if err := fn(r); err != nil {
				return err
			}
			nb, err := json.Marshal(r)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, nb, 0)
				// The grant key lives exactly as long as the grant: issued with the
				// vote that completes the quorum, gone at not_after or revocation.
				if r.Type != elevation.TypeStatement && r.State == elevation.StateApproved && !r.NotAfter.IsZero() {
					p.SetArgs(ctx, s.grantKey(id), nb, redis.SetArgs{ExpireAt: r.NotAfter})
					p.SAdd(ctx, s.grantIndex(), id)
				} else if r.Type != elevation.TypeStatement {
					p.Del(ctx, s.grantKey(id))
					p.SRem(ctx, s.grantIndex(), id)
				}
				p.Publish(ctx, s.channel(), id)
				return nil
			})
			out = r
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue // someone else changed it; decide again on the new value
		}
		if err != nil {
			var redisErr redis.Error
			if errors.As(err, &redisErr) || isNetErr(err) {
				return nil, unavailable(err)
			}
			return nil, err
		}
		return out, nil
	}
	return nil, fmt.Errorf("request %s: too much contention in Redis", id)
}

// RevokeSession records the console session as ended, expiring with it.
func (s *Store) RevokeSession(ctx context.Context, key string, until time.Time) error {
	return unavailable(s.rdb.Set(ctx, s.prefix+"revoked:"+key, "1", max(time.Until(until), time.Second)).Err())
}

// SessionRevoked reports whether the console session was ended.
func (s *Store) SessionRevoked(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.prefix+"revoked:"+key).Result()
	return n > 0, unavailable(err)
}

// LogTo sends what the Redis client logs of its own (a failover seen, a reconnect, a
// pool problem) to logger as warnings, instead of to standard error unformatted. The
// client's logger is process-wide.
func LogTo(logger *slog.Logger) { redis.SetLogger(slogPrintf{logger}) }

type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	p.l.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
