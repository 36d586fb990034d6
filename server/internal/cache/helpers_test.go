package cache

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// ruleSet compiles a minimal valid configuration for positive entries.
func ruleSet(tb testing.TB) *s3cors.RuleSet {
	tb.Helper()
	cfg, _, err := s3cors.DecodeJSON([]byte(`{"CORSRules":[{"AllowedOrigins":["*"],"AllowedMethods":["GET"]}]}`))
	if err != nil {
		tb.Fatalf("DecodeJSON: %v", err)
	}
	return s3cors.Compile(cfg, s3cors.Options{})
}

// fakeStore is a Loader backed by a map: a bucket with an etag has a
// configuration, any other bucket is negative. It counts calls per bucket.
type fakeStore struct {
	rs *s3cors.RuleSet

	mu    sync.Mutex
	etags map[string]string
	err   error
	calls map[string]int
}

// sameEntry reports whether a and b are equal entries. The cache keeps its
// own copy of what it is given (see state), so the entry it returns equals
// the one the Loader or Set supplied without being the same pointer, and
// so does its RuleSet: a byte copy of the rule set's block.
func sameEntry(a, b *Entry) bool {
	if a.Bucket != b.Bucket || a.ETag != b.ETag || (a.RuleSet == nil) != (b.RuleSet == nil) {
		return false
	}
	return a.RuleSet == nil || bytes.Equal(ruleSetBytes(a.RuleSet), ruleSetBytes(b.RuleSet))
}

// ruleSetBytes is rs's block (see s3cors.RuleSet).
func ruleSetBytes(rs *s3cors.RuleSet) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(rs)), rs.Size())
}

func newFakeStore(tb testing.TB) *fakeStore {
	return &fakeStore{rs: ruleSet(tb), etags: map[string]string{}, calls: map[string]int{}}
}

func (f *fakeStore) load(_ context.Context, bucket string) (*Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[bucket]++
	if f.err != nil {
		return nil, f.err
	}
	etag, ok := f.etags[bucket]
	if !ok {
		return &Entry{Bucket: bucket}, nil
	}
	return &Entry{Bucket: bucket, RuleSet: f.rs, ETag: etag}, nil
}

func (f *fakeStore) put(bucket, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.etags[bucket] = etag
}

func (f *fakeStore) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeStore) callsFor(bucket string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[bucket]
}

// gate is a Loader that blocks every call until released, so tests can hold
// a load in flight deterministically.
type gate struct {
	calls   atomic.Int64
	started chan string   // receives the bucket when a call begins
	release chan struct{} // closed (or sent to) to let calls return
	entry   func(bucket string) (*Entry, error)
	ctxErr  chan error // receives the load context's error when a call returns
}

func newGate(entry func(bucket string) (*Entry, error)) *gate {
	return &gate{
		// Room for one send per call even if coalescing were broken, so a
		// regression fails the test instead of deadlocking it.
		started: make(chan string, 1024),
		release: make(chan struct{}),
		entry:   entry,
		ctxErr:  make(chan error, 1024),
	}
}

func (g *gate) load(ctx context.Context, bucket string) (*Entry, error) {
	g.calls.Add(1)
	// Read before blocking, like a store read that happens at the start of
	// the load and whose answer arrives later.
	e, err := g.entry(bucket)
	g.started <- bucket
	<-g.release
	g.ctxErr <- ctx.Err()
	return e, err
}

// recorder is an Observer that counts events.
type recorder struct {
	hits, negHits, misses, stale, evicted, loads, loadErrs atomic.Int64
	compactions, compacted                                 atomic.Int64
}

func (r *recorder) Hit(negative bool) {
	if negative {
		r.negHits.Add(1)
		return
	}
	r.hits.Add(1)
}
func (r *recorder) Miss()         { r.misses.Add(1) }
func (r *recorder) StaleServed()  { r.stale.Add(1) }
func (r *recorder) Evicted(n int) { r.evicted.Add(int64(n)) }
func (r *recorder) Compacted(moved int) {
	r.compactions.Add(1)
	r.compacted.Add(int64(moved))
}
func (r *recorder) LoadDone(_ time.Duration, err error) {
	r.loads.Add(1)
	if err != nil {
		r.loadErrs.Add(1)
	}
}

// fakeClock is a settable clock for the Now hook.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// eventually polls cond until it holds or a deadline passes, instead of
// sleeping for a fixed time and hoping.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits for a value from ch with a deadline.
func recv[T any](tb testing.TB, what string, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// result is one Get's outcome, for Gets run on another goroutine.
type result struct {
	e   *Entry
	err error
}

func goGet(ctx context.Context, c *Cache, bucket string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		e, err := c.Get(ctx, bucket)
		ch <- result{e, err}
	}()
	return ch
}

func mustGet(tb testing.TB, c *Cache, bucket string) *Entry {
	tb.Helper()
	e, err := c.Get(context.Background(), bucket)
	if err != nil {
		tb.Fatalf("Get(%q): %v", bucket, err)
	}
	if e == nil || e.Bucket != bucket {
		tb.Fatalf("Get(%q) = %+v, want an entry for that bucket", bucket, e)
	}
	return e
}
