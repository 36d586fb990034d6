// Package filestore is the embedded store.Store: one S3 XML file per bucket
// in a directory, <dir>/<bucket>.xml, and, for a bucket a principal claimed
// (store.Cond.Owner), the principal's name in <dir>/<bucket>.owner.
//
// The directory is meant to be editable by operators and configuration
// management as well as through corsd, so the store treats the files as the
// truth: reads go to the files, the in-memory index only lists what exists,
// and an fsnotify watcher plus a periodic rescan keep the index and the
// change feed current when the files are edited behind corsd's back. Such
// edits should replace a file by renaming a complete one into place; a file
// rewritten in place may be seen half-written, and is then re-read (and
// reported again) when the write finishes.
//
// Writes are crash-safe (temp file, fsync, rename, fsync directory), and an
// exclusive flock on <dir>/.lock keeps a second corsd process from sharing
// the directory, because the per-bucket compare-and-set is only serialized
// inside one process.
package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/corsd/corsd/server/internal/bucketname"
	"github.com/corsd/corsd/server/internal/store"
)

// MaxDocumentSize caps a stored document. S3 CORS configurations are far
// smaller (64 KiB); the cap only stops a stray huge file from being read
// into memory whole.
const MaxDocumentSize = 1 << 20

// DefaultRescanInterval is how often the directory is rescanned in full when
// Options.RescanInterval is zero.
const DefaultRescanInterval = 30 * time.Second

// maxListLimit bounds a List page, as S3 bounds its listings, so one request
// cannot make the store read every file at once.
const maxListLimit = 1000

// lockStripes is the number of per-bucket writer locks. Bucket names hash
// onto a fixed set so memory stays bounded however many buckets come and go;
// two buckets sharing a stripe only serialize, which is harmless.
const lockStripes = 256

const (
	fileSuffix  = ".xml"
	ownerSuffix = ".owner"
	// maxOwnerSize bounds an owner file read; principal names are short.
	maxOwnerSize = 1024
	lockName     = ".lock"
	fileMode     = 0o640
	dirMode      = 0o750
)

// ErrTooLarge means a document, or a file found in the directory, is larger
// than MaxDocumentSize.
var ErrTooLarge = errors.New("filestore: document larger than 1 MiB")

// ErrLocked means another Store (in this or another process) holds the
// directory.
var ErrLocked = errors.New("filestore: directory is in use by another corsd store")

// Options configures Open. The zero value is usable.
type Options struct {
	// Logger receives the store's diagnostics; nil discards them.
	Logger *slog.Logger
	// RescanInterval is the period of the full rescan that repairs missed
	// watch events; zero means DefaultRescanInterval.
	RescanInterval time.Duration
}

// Store is a store.Store backed by one file per bucket in a directory.
type Store struct {
	dir    string
	log    *slog.Logger
	rescan time.Duration

	lockFile *os.File
	watcher  *fsnotify.Watcher

	// stripes serialize writers (and the watcher's refresh) per bucket. A
	// buffered channel is used instead of a mutex so waiting honours ctx.
	stripes [lockStripes]chan struct{}

	// ctx is cancelled by Close; background work runs under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards everything below
	closed bool
	index  map[string]entry // bucket → what the store last saw on disk
	names  []string         // index keys, sorted, for List

	changes *store.Fanout

	closeOnce sync.Once
	closeErr  error
}

// entry is the index's view of one file. Size and mtime let a rescan skip
// re-reading files that have not changed.
type entry struct {
	etag  string
	mtime time.Time
	size  int64
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir, takes the directory's
// lock, loads every configuration into the index and starts watching. It
// fails if another Store holds dir, or if any configuration file cannot be
// read, so a broken directory is found at start-up rather than on a request.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rescan := opts.RescanInterval
	if rescan <= 0 {
		rescan = DefaultRescanInterval
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("filestore: create %s: %w", dir, err)
	}
	lockFile, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:      dir,
		log:      log.With(slog.String("component", "filestore"), slog.String("dir", dir)),
		rescan:   rescan,
		lockFile: lockFile,
		index:    make(map[string]entry),
		changes:  store.NewFanout(),
	}
	for i := range s.stripes {
		s.stripes[i] = make(chan struct{}, 1)
	}
	// Watch before loading so an edit made during the load is not lost:
	// it is either seen by the load or queued as an event.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.releaseLock()
		return nil, fmt.Errorf("filestore: start watcher: %w", err)
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		s.releaseLock()
		return nil, fmt.Errorf("filestore: watch %s: %w", dir, err)
	}
	s.watcher = w
	if err := s.load(ctx); err != nil {
		_ = w.Close()
		s.releaseLock()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.log.Info("file store opened", slog.Int("buckets", len(s.names)))
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

// lockDir takes a non-blocking exclusive flock on <dir>/.lock. flock locks
// belong to the open file description, so a second Open in the same process
// conflicts too, not only another process.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("filestore: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked", ErrLocked, path)
		}
		return nil, fmt.Errorf("filestore: lock %s: %w", path, err)
	}
	return f, nil
}

func (s *Store) releaseLock() error {
	// Closing the descriptor drops the flock; unlocking first just makes the
	// release explicit and independent of any duplicated descriptor.
	unlockErr := syscall.Flock(int(s.lockFile.Fd()), syscall.LOCK_UN)
	closeErr := s.lockFile.Close()
	if err := errors.Join(unlockErr, closeErr); err != nil {
		return fmt.Errorf("filestore: release lock: %w", err)
	}
	return nil
}

// load reads every configuration file into the index and removes temp files
// left by a crashed writer; holding the lock guarantees no live writer of
// ours owns them.
func (s *Store) load(ctx context.Context) error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("filestore: read %s: %w", s.dir, err)
	}
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("filestore: load: %w", err)
		}
		name := de.Name()
		if isTempFile(name) {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot remove stale temp file", slog.String("file", name), slog.Any("error", err))
			} else {
				s.log.Info("removed stale temp file", slog.String("file", name))
			}
			continue
		}
		// Symlinks are followed (readFile opens the target), so a directory
		// of links such as a Kubernetes ConfigMap mount works.
		bucket, ok := bucketOf(name)
		if !ok || de.IsDir() {
			continue
		}
		_, e, err := s.readFile(bucket)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since ReadDir
		}
		if err != nil {
			return fmt.Errorf("filestore: load: %w", err)
		}
		s.setIndex(bucket, e)
	}
	return nil
}

// bucketOf maps a directory entry to its bucket; ok is false for every file
// that is not <valid-bucket>.xml (the lock, temp files, editor backups…).
func bucketOf(name string) (string, bool) {
	bucket, ok := strings.CutSuffix(name, fileSuffix)
	if !ok || bucketname.Validate(bucket) != nil {
		return "", false
	}
	return bucket, true
}

// isTempFile reports whether name is one of this store's temp files,
// .<bucket>.xml.tmp-<random> or .<bucket>.owner.tmp-<random>.
func isTempFile(name string) bool {
	return strings.HasPrefix(name, ".") &&
		(strings.Contains(name, fileSuffix+".tmp-") || strings.Contains(name, ownerSuffix+".tmp-"))
}

func (s *Store) path(bucket string) string { return filepath.Join(s.dir, bucket+fileSuffix) }

func (s *Store) ownerPath(bucket string) string { return filepath.Join(s.dir, bucket+ownerSuffix) }

// readOwner returns the bucket's owner file's content, "" when there is
// none. It means something only while the bucket's .xml exists: a stale
// owner file (left by a crash between the two removals of Delete) is
// rewritten or removed by the next Put that creates the configuration.
func (s *Store) readOwner(bucket string) (string, error) {
	f, err := os.Open(s.ownerPath(bucket))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: open %s: %w", store.ErrUnavailable, bucket+ownerSuffix, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOwnerSize+1))
	if err != nil {
		return "", fmt.Errorf("%w: read %s: %w", store.ErrUnavailable, bucket+ownerSuffix, err)
	}
	if len(b) > maxOwnerSize {
		// Failing closed: a garbled owner must not read as "no owner".
		return "", fmt.Errorf("%w: %s is larger than %d bytes", store.ErrUnavailable, bucket+ownerSuffix, maxOwnerSize)
	}
	return strings.TrimSpace(string(b)), nil
}

// readRecord reads a bucket's configuration and owner.
func (s *Store) readRecord(bucket string) (store.Record, entry, error) {
	rec, e, err := s.readFile(bucket)
	if err != nil {
		return store.Record{}, entry{}, err
	}
	if rec.Owner, err = s.readOwner(bucket); err != nil {
		return store.Record{}, entry{}, err
	}
	return rec, e, nil
}

// readFile reads a bucket's file. The mtime comes from the same descriptor
// as the content, so the record's Updated and ETag describe one version even
// if the file is replaced meanwhile (a rename installs a new inode).
func (s *Store) readFile(bucket string) (store.Record, entry, error) {
	f, err := os.Open(s.path(bucket))
	if errors.Is(err, fs.ErrNotExist) {
		return store.Record{}, entry{}, fmt.Errorf("%w: bucket %q", store.ErrNotFound, bucket)
	}
	if err != nil {
		return store.Record{}, entry{}, fmt.Errorf("%w: open %s: %w", store.ErrUnavailable, bucket+fileSuffix, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return store.Record{}, entry{}, fmt.Errorf("%w: stat %s: %w", store.ErrUnavailable, bucket+fileSuffix, err)
	}
	if !fi.Mode().IsRegular() {
		return store.Record{}, entry{}, fmt.Errorf("%w: %s is not a regular file", store.ErrUnavailable, bucket+fileSuffix)
	}
	doc, err := io.ReadAll(io.LimitReader(f, MaxDocumentSize+1))
	if err != nil {
		return store.Record{}, entry{}, fmt.Errorf("%w: read %s: %w", store.ErrUnavailable, bucket+fileSuffix, err)
	}
	if len(doc) > MaxDocumentSize {
		return store.Record{}, entry{}, fmt.Errorf("%s: %w", bucket+fileSuffix, ErrTooLarge)
	}
	etag := store.ETag(doc)
	rec := store.Record{Bucket: bucket, Document: doc, ETag: etag, Updated: fi.ModTime()}
	return rec, entry{etag: etag, mtime: fi.ModTime(), size: fi.Size()}, nil
}

// checkOpen fails once Close has begun, so no operation races the release of
// the directory lock.
func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: store is closed", store.ErrUnavailable)
	}
	return nil
}

// Get implements store.Store. It reads the file rather than trusting the
// index, so an external edit is visible before the watcher reports it.
func (s *Store) Get(ctx context.Context, bucket string) (store.Record, error) {
	if err := bucketname.Validate(bucket); err != nil {
		return store.Record{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Record{}, fmt.Errorf("filestore: get %q: %w", bucket, err)
	}
	if err := s.checkOpen(); err != nil {
		return store.Record{}, err
	}
	rec, _, err := s.readRecord(bucket)
	if err != nil {
		return store.Record{}, err
	}
	return rec, nil
}

// lockBucket takes bucket's writer stripe, giving up when ctx is done.
func (s *Store) lockBucket(ctx context.Context, bucket string) (unlock func(), err error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(bucket))
	stripe := s.stripes[h.Sum32()%lockStripes]
	select {
	case stripe <- struct{}{}:
		return func() { <-stripe }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("filestore: lock %q: %w", bucket, ctx.Err())
	case <-s.ctx.Done():
		// Close holds every stripe once it has drained the writers in
		// flight; a writer still waiting must give up, not wait forever.
		return nil, fmt.Errorf("%w: store is closed", store.ErrUnavailable)
	}
}

// current returns the bucket's configuration as it is on disk now (exists
// false if there is none). Reading the files (not the index) makes
// compare-and-set correct even against an external edit the watcher has
// not reported yet.
func (s *Store) current(bucket string) (rec store.Record, exists bool, err error) {
	rec, _, err = s.readRecord(bucket)
	if errors.Is(err, store.ErrNotFound) {
		return store.Record{}, false, nil
	}
	if err != nil {
		return store.Record{}, false, err
	}
	return rec, true, nil
}

// checkCond applies cond to the bucket's current state; see store.Cond.
func checkCond(bucket string, cond store.Cond, cur store.Record, exists bool) error {
	if cond.Owner != "" && exists && cur.Owner != cond.Owner {
		return fmt.Errorf("%w: bucket %q", store.ErrNotOwner, bucket)
	}
	if cond.IfMatch == "" || cond.IfMatch == cur.ETag {
		return nil
	}
	if !exists {
		return fmt.Errorf("%w: bucket %q has no configuration", store.ErrPreconditionFailed, bucket)
	}
	return fmt.Errorf("%w: bucket %q is at %s, not %s", store.ErrPreconditionFailed, bucket, cur.ETag, cond.IfMatch)
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, bucket string, doc []byte, cond store.Cond) (store.Record, error) {
	if err := bucketname.Validate(bucket); err != nil {
		return store.Record{}, err
	}
	if len(doc) > MaxDocumentSize {
		return store.Record{}, fmt.Errorf("filestore: put %q: %w", bucket, ErrTooLarge)
	}
	if err := s.checkOpen(); err != nil {
		return store.Record{}, err
	}
	unlock, err := s.lockBucket(ctx, bucket)
	if err != nil {
		return store.Record{}, err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return store.Record{}, fmt.Errorf("filestore: put %q: %w", bucket, err)
	}
	cur, exists, err := s.current(bucket)
	if err != nil {
		return store.Record{}, err
	}
	if err := checkCond(bucket, cond, cur, exists); err != nil {
		return store.Record{}, err
	}
	owner := cur.Owner
	if !exists {
		// Creating: the owner file is written first, so a crash leaves at
		// worst an owner for a bucket with no configuration, which means
		// nothing (see readOwner); never a claimed configuration without
		// its owner.
		owner = cond.Owner
		if err := s.setOwner(bucket, owner); err != nil {
			return store.Record{}, err
		}
	}
	mtime, err := s.writeAtomic(bucket, fileSuffix, doc)
	if err != nil {
		return store.Record{}, err
	}
	// Copy so the caller may reuse its buffer without changing the record.
	rec := store.Record{Bucket: bucket, Document: bytes.Clone(doc), ETag: store.ETag(doc), Updated: mtime, Owner: owner}
	if rec.Document == nil {
		rec.Document = []byte{}
	}
	s.setIndex(bucket, entry{etag: rec.ETag, mtime: mtime, size: int64(len(doc))})
	s.publish(store.Change{Bucket: bucket, ETag: rec.ETag, At: mtime})
	return rec, nil
}

// setOwner installs owner as the bucket's owner file, or removes the file
// when owner is "".
func (s *Store) setOwner(bucket, owner string) error {
	if owner != "" {
		_, err := s.writeAtomic(bucket, ownerSuffix, []byte(owner+"\n"))
		return err
	}
	err := os.Remove(s.ownerPath(bucket))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: put %q: remove stale owner file: %w", store.ErrUnavailable, bucket, err)
	}
	return nil
}

// writeAtomic installs data as <bucket><suffix> atomically and durably: a
// reader or a crash sees the old file or the new one, never a mix.
func (s *Store) writeAtomic(bucket, suffix string, doc []byte) (time.Time, error) {
	tmp, err := os.CreateTemp(s.dir, "."+bucket+suffix+".tmp-")
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: create temp file: %w", store.ErrUnavailable, bucket, err)
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			if err := os.Remove(tmpName); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot remove temp file", slog.String("file", tmpName), slog.Any("error", err))
			}
		}
	}()
	if err := tmp.Chmod(fileMode); err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: chmod temp file: %w", store.ErrUnavailable, bucket, err)
	}
	if _, err := tmp.Write(doc); err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: write temp file: %w", store.ErrUnavailable, bucket, err)
	}
	if err := tmp.Sync(); err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: sync temp file: %w", store.ErrUnavailable, bucket, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: stat temp file: %w", store.ErrUnavailable, bucket, err)
	}
	if err := tmp.Close(); err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: close temp file: %w", store.ErrUnavailable, bucket, err)
	}
	if err := os.Rename(tmpName, filepath.Join(s.dir, bucket+suffix)); err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: rename: %w", store.ErrUnavailable, bucket, err)
	}
	committed = true
	if err := s.syncDir(); err != nil {
		return time.Time{}, fmt.Errorf("%w: put %q: %w", store.ErrUnavailable, bucket, err)
	}
	return fi.ModTime(), nil
}

// syncDir makes a rename or removal in the directory durable.
func (s *Store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	syncErr := d.Sync()
	closeErr := d.Close()
	if err := errors.Join(syncErr, closeErr); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// Delete implements store.Store. The owner file goes after the
// configuration, so a crash between the two leaves an owner that means
// nothing (see readOwner), never a configuration that lost its owner.
func (s *Store) Delete(ctx context.Context, bucket string, cond store.Cond) error {
	if err := bucketname.Validate(bucket); err != nil {
		return err
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	unlock, err := s.lockBucket(ctx, bucket)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("filestore: delete %q: %w", bucket, err)
	}
	if cond != (store.Cond{}) {
		cur, exists, err := s.current(bucket)
		if err != nil {
			return err
		}
		if err := checkCond(bucket, cond, cur, exists); err != nil {
			return err
		}
	}
	err = os.Remove(s.path(bucket))
	if errors.Is(err, fs.ErrNotExist) {
		// Idempotent; still drop any stale index entry.
		if s.dropIndex(bucket) {
			s.publish(store.Change{Bucket: bucket, At: time.Now()})
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: delete %q: %w", store.ErrUnavailable, bucket, err)
	}
	at := time.Now()
	ownerErr := os.Remove(s.ownerPath(bucket))
	if errors.Is(ownerErr, fs.ErrNotExist) {
		ownerErr = nil
	}
	syncErr := s.syncDir()
	// The file is gone whether or not the directory sync worked, so the index
	// and subscribers must hear about it either way.
	s.dropIndex(bucket)
	s.publish(store.Change{Bucket: bucket, At: at})
	if err := errors.Join(ownerErr, syncErr); err != nil {
		return fmt.Errorf("%w: delete %q: %w", store.ErrUnavailable, bucket, err)
	}
	return nil
}

// List implements store.Store. prefix and after are compared as plain
// strings and never become paths, so they are not validated as bucket names
// (a prefix such as "a" is legitimately shorter than any bucket). limit is
// capped at 1000.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) ([]store.Record, string, error) {
	if err := s.checkOpen(); err != nil {
		return nil, "", err
	}
	if limit <= 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	recs := make([]store.Record, 0, min(limit, 64))
	cursor := after
	for len(recs) < limit {
		names := s.namesAfter(prefix, cursor, limit-len(recs))
		if len(names) == 0 {
			return recs, "", nil
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return nil, "", fmt.Errorf("filestore: list: %w", err)
			}
			rec, _, err := s.readRecord(name)
			if errors.Is(err, store.ErrNotFound) {
				continue // deleted since the index was read
			}
			if err != nil {
				return nil, "", err
			}
			recs = append(recs, rec)
		}
		cursor = names[len(names)-1]
	}
	if len(s.namesAfter(prefix, cursor, 1)) == 0 {
		return recs, "", nil
	}
	return recs, recs[len(recs)-1].Bucket, nil
}

// namesAfter returns up to n indexed bucket names > after that start with
// prefix, in order.
func (s *Store) namesAfter(prefix, after string, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.SearchStrings(s.names, prefix)
	if j := sort.Search(len(s.names), func(k int) bool { return s.names[k] > after }); j > i {
		i = j
	}
	var out []string
	for ; i < len(s.names) && len(out) < n && strings.HasPrefix(s.names[i], prefix); i++ {
		out = append(out, s.names[i])
	}
	return out
}

// Ping implements store.Store by checking that the directory is still there
// and is a directory.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("filestore: ping: %w", err)
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", store.ErrUnavailable, s.dir)
	}
	return nil
}

// Close implements store.Store: it stops the watcher and the subscriber
// goroutines (closing every Changes channel) and releases the directory
// lock. Calls after the first return nil.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		watchErr := s.watcher.Close()
		s.wg.Wait()
		s.changes.Close()
		// Writers in flight hold a stripe; wait for them so the lock is not
		// released while one is still renaming into the directory.
		for i := range s.stripes {
			s.stripes[i] <- struct{}{}
		}
		lockErr := s.releaseLock()
		s.closeErr = errors.Join(watchErr, lockErr)
		s.log.Info("file store closed")
	})
	if !first {
		return nil
	}
	return s.closeErr
}

func (s *Store) setIndex(bucket string, e entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[bucket]; !ok {
		i := sort.SearchStrings(s.names, bucket)
		s.names = append(s.names, "")
		copy(s.names[i+1:], s.names[i:])
		s.names[i] = bucket
	}
	s.index[bucket] = e
}

// dropIndex removes bucket from the index and reports whether it was there.
func (s *Store) dropIndex(bucket string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[bucket]; !ok {
		return false
	}
	delete(s.index, bucket)
	i := sort.SearchStrings(s.names, bucket)
	s.names = append(s.names[:i], s.names[i+1:]...)
	return true
}

// Changes implements store.Store with a store.Fanout: writers never wait
// for a subscriber, and one whose buffer is full gets an All change instead
// of the changes it missed.
func (s *Store) Changes(ctx context.Context) <-chan store.Change {
	return s.changes.Subscribe(ctx)
}

// publish offers c to every subscriber without blocking.
func (s *Store) publish(c store.Change) { s.changes.Publish(c) }

// watch runs the fsnotify loop and the periodic rescan until Close.
func (s *Store) watch() {
	defer s.wg.Done()
	ticker := time.NewTicker(s.rescan)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-s.watcher.Events:
			if !ok {
				return
			}
			s.handleEvent(ev)
		case err, ok := <-s.watcher.Errors:
			if !ok {
				return
			}
			// Events may have been lost (e.g. the inotify queue overflowed):
			// repair the index, then tell everyone to resync.
			s.log.Warn("file watcher error; rescanning", slog.Any("error", err))
			s.rescanDir()
			s.publish(store.Change{All: true})
		case <-ticker.C:
			s.rescanDir()
		}
	}
}

func (s *Store) handleEvent(ev fsnotify.Event) {
	if ev.Op == fsnotify.Chmod {
		return // attributes only; the content and name did not change
	}
	bucket, ok := bucketOf(filepath.Base(ev.Name))
	if !ok {
		return
	}
	s.refresh(bucket)
}

// refresh re-reads one bucket's file and, if it differs from the index,
// updates the index and publishes a Change. It holds the bucket's stripe so
// it cannot interleave with a Put and leave a stale entry behind.
func (s *Store) refresh(bucket string) {
	unlock, err := s.lockBucket(s.ctx, bucket)
	if err != nil {
		return // closing
	}
	defer unlock()
	_, e, err := s.readFile(bucket)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if s.dropIndex(bucket) {
			s.log.Info("configuration removed outside corsd", slog.String("bucket", bucket))
			s.publish(store.Change{Bucket: bucket})
		}
	case err != nil:
		// Unreadable now (too large, permissions): drop it from listings so
		// List keeps working; Get reports the error to whoever asks.
		s.log.Error("cannot read configuration file", slog.String("bucket", bucket), slog.Any("error", err))
		if s.dropIndex(bucket) {
			s.publish(store.Change{Bucket: bucket})
		}
	default:
		s.mu.Lock()
		old, had := s.index[bucket]
		s.mu.Unlock()
		if had && old.etag == e.etag {
			// Same content (e.g. our own write echoing back, or a touch):
			// keep the stat data current so the rescan does not re-read it.
			s.setIndex(bucket, e)
			return
		}
		s.setIndex(bucket, e)
		s.log.Info("configuration changed outside corsd", slog.String("bucket", bucket), slog.String("etag", e.etag))
		s.publish(store.Change{Bucket: bucket, ETag: e.etag, At: e.mtime})
	}
}

// rescanDir compares the directory with the index and refreshes every bucket
// that was added, removed, or whose size or mtime changed. Comparing stat
// data first keeps a periodic rescan cheap for large, quiet directories.
func (s *Store) rescanDir() {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Error("rescan failed", slog.Any("error", err))
		return
	}
	seen := make(map[string]bool, len(des))
	var stale []string
	for _, de := range des {
		bucket, ok := bucketOf(de.Name())
		if !ok || de.IsDir() {
			continue
		}
		seen[bucket] = true
		// os.Stat, not de.Info: it follows symlinks, so replacing a link's
		// target is noticed even though the link itself is unchanged.
		fi, err := os.Stat(filepath.Join(s.dir, de.Name()))
		if err != nil {
			stale = append(stale, bucket) // vanished or unreadable: let refresh decide
			continue
		}
		s.mu.Lock()
		e, had := s.index[bucket]
		s.mu.Unlock()
		if !had || !e.mtime.Equal(fi.ModTime()) || e.size != fi.Size() {
			stale = append(stale, bucket)
		}
	}
	s.mu.Lock()
	for _, name := range s.names {
		if !seen[name] {
			stale = append(stale, name)
		}
	}
	s.mu.Unlock()
	for _, bucket := range stale {
		if s.ctx.Err() != nil {
			return
		}
		s.refresh(bucket)
	}
}
