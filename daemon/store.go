package daemon

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The session's buckets.
var (
	bucketTasks   = []byte("tasks")   // gid (16 hex) -> record (JSON)
	bucketQueue   = []byte("queue")   // position (big-endian uint64) -> gid: waiting and paused tasks, in order
	bucketStopped = []byte("stopped") // stop sequence (big-endian uint64) -> gid: ended tasks, oldest first
	bucketMeta    = []byte("meta")    // reserved for the daemon's own state
)

// op is one change of the session: a put, or a delete when val is nil.
type op struct {
	bucket, key, val []byte
}

func u64key(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// store is the session file. Changes are queued by commit, in the order of
// the calls, and written by one goroutine that puts all the changes queued
// meanwhile into one transaction: concurrent callers share an fsync, and a
// later change of a task never lands before an earlier one.
type store struct {
	db *bolt.DB

	mu      sync.Mutex
	pending []op
	waiters []chan error
	kick    chan struct{}
	closed  bool
	done    chan struct{}
}

// openStore opens (or creates) the session at path. bbolt locks the file:
// a second daemon on the same session fails here after a second.
func openStore(path string) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("session directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open session %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTasks, bucketQueue, bucketStopped, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("session %s: %w", path, err)
	}
	s := &store{db: db, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go s.writer()
	return s, nil
}

// commit queues ops and returns a channel that receives the outcome once
// they are durable. It does not block, so the engine calls it under its
// lock (which fixes the order) and waits after releasing it.
func (s *store) commit(ops ...op) <-chan error {
	ch := make(chan error, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ch <- errClosed
		return ch
	}
	s.pending = append(s.pending, ops...)
	s.waiters = append(s.waiters, ch)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return ch
}

var errClosed = errors.New("the daemon is shutting down")

func (s *store) writer() {
	defer close(s.done)
	for range s.kick {
		s.mu.Lock()
		ops, waiters := s.pending, s.waiters
		s.pending, s.waiters = nil, nil
		closed := s.closed
		s.mu.Unlock()
		if len(waiters) > 0 {
			err := s.db.Update(func(tx *bolt.Tx) error {
				for _, o := range ops {
					b := tx.Bucket(o.bucket)
					var err error
					if o.val == nil {
						err = b.Delete(o.key)
					} else {
						err = b.Put(o.key, o.val)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				err = fmt.Errorf("session write: %w", err)
			}
			for _, w := range waiters {
				w <- err
			}
		}
		if closed {
			return
		}
	}
}

// close writes what is queued and closes the file.
func (s *store) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.kick <- struct{}{}
	<-s.done
	return s.db.Close()
}

// loaded is what a session holds.
type loaded struct {
	tasks   map[string]*record
	queue   []string // gids of waiting and paused tasks, in order
	stopped []string // gids of ended tasks, oldest first
}

func (s *store) load() (*loaded, error) {
	l := &loaded{tasks: map[string]*record{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			r := new(record)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("task %s: %w", k, err)
			}
			l.tasks[string(k)] = r
			return nil
		})
		if err != nil {
			return err
		}
		for _, b := range []struct {
			name []byte
			to   *[]string
		}{{bucketQueue, &l.queue}, {bucketStopped, &l.stopped}} {
			err := tx.Bucket(b.name).ForEach(func(k, v []byte) error {
				*b.to = append(*b.to, string(v))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	return l, nil
}
