// Package cache is a replica's in-memory cache of compiled bucket CORS rule
// sets, so that decisions are answered without touching the store.
//
// A hit on a fresh entry is lock-free, and allocation-free through Rules
// (the decision path; Get allocates the Entry it returns): one probe of a
// flat hash index (see index.go), whose cell points at the bucket's state,
// and a few compares. Everything else (misses, stale entries, writes,
// eviction) takes locks that the hit path never takes.
//
// Freshness has three independent sources, all cheap to test on a hit:
//   - Invalidate replaces a bucket's immutable state with a copy marked
//     invalid (one field read on the hit path);
//   - InvalidateAll bumps a cache-wide epoch, which makes every state
//     installed under an older epoch stale without touching any of them;
//   - negative entries carry an expiry instant (NegativeTTL).
//
// Loads are coalesced per bucket: one Loader call runs on its own goroutine
// with a context detached from the callers' cancellation, and every caller
// waiting for it shares the result while still honouring its own context.
// Each bucket has a generation, bumped by Set and Invalidate, and a load may
// install its result only if the generation it started under is still
// current, so a load that raced with a write never resurrects older state.
package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/corsd/corsd/server/internal/s3cors"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultMaxEntries  = 100_000
	DefaultNegativeTTL = 30 * time.Second
	DefaultLoadTimeout = time.Second
	// DefaultRetryBackoff is how long a stale entry whose reload failed is
	// served without trying the store again.
	DefaultRetryBackoff = time.Second
)

// Errors the cache produces itself; a Loader's own errors are returned
// wrapped, so test them with errors.Is.
var (
	// ErrNilEntry means a Loader returned neither an entry nor an error.
	ErrNilEntry = errors.New("cache: loader returned a nil entry and no error")
	// ErrLoaderPanic means a Loader panicked. The load runs on a goroutine of
	// its own, where an unrecovered panic would take the whole process down
	// instead of failing one request, so the cache turns it into this error.
	ErrLoaderPanic = errors.New("cache: loader panicked")
)

// Entry is one bucket's compiled state. A nil RuleSet means the bucket has no
// CORS configuration (a negative entry). Entries are shared between callers
// and must be treated as read-only once handed to the cache. The cache keeps
// its own copy of an entry it is given (see state), so the *Entry a Get
// returns is equal to the one the Loader or Set supplied, not the same
// pointer, and so is its RuleSet: a copy that decides exactly as the
// original.
type Entry struct {
	Bucket  string
	RuleSet *s3cors.RuleSet
	ETag    string
}

// Loader reads and compiles one bucket from the store. It returns an Entry
// with a nil RuleSet when the bucket has no configuration; an error means the
// store could not answer, and the cache then serves the previous entry if it
// has one. The cache calls it on a goroutine of its own with a context
// bounded by Options.LoadTimeout, and it must honour that context: a Loader
// that ignores it keeps its goroutine (and the bucket's load) alive.
type Loader func(ctx context.Context, bucket string) (*Entry, error)

// Observer receives cache events, so the metrics package can count them
// without the cache importing Prometheus. Methods are called synchronously,
// Hit on the hot path, so they must be cheap, non-blocking and safe for
// concurrent use.
type Observer interface {
	// Hit reports a Get answered from a fresh entry; negative is true when
	// the entry says the bucket has no configuration.
	Hit(negative bool)
	// Miss reports a Get that could not be answered from a fresh entry and
	// waited for a (possibly shared) load.
	Miss()
	// StaleServed reports a Get answered with a stale entry because the
	// reload failed.
	StaleServed()
	// Evicted reports n entries dropped to respect MaxEntries.
	Evicted(n int)
	// Compacted reports one compaction of the states' arena: the bytes of
	// current states it copied out of chunks holding many replaced ones.
	Compacted(movedBytes int)
	// LoadDone reports one Loader call, its wall-clock duration and its
	// error (nil on success).
	LoadDone(d time.Duration, err error)
}

// Options tune a Cache. The zero value is usable.
type Options struct {
	// MaxEntries bounds the number of cached buckets (default
	// DefaultMaxEntries). Eviction is approximate LRU (CLOCK).
	MaxEntries int
	// NegativeTTL is how long a negative entry is trusted before the next
	// Get reloads it: 0 means DefaultNegativeTTL, < 0 means forever.
	// Positive entries never expire; writes invalidate them.
	NegativeTTL time.Duration
	// LoadTimeout bounds one Loader call (default DefaultLoadTimeout; <= 0
	// means the default). The load is detached from the callers' contexts,
	// so without this bound a hung store would pin the load forever.
	LoadTimeout time.Duration
	// RetryBackoff: after a reload of a stale entry fails, the entry is
	// served at once (stale-if-error, counted) and the store is retried in
	// the background at most this often (default DefaultRetryBackoff), so a
	// store outage adds no latency to warm buckets.
	RetryBackoff time.Duration
	// Now is the clock for negative-entry expiry, for tests (default
	// time.Now). Load durations are always measured on the real clock.
	Now func() time.Time
	// Observer receives cache events (nil means none).
	Observer Observer
}

// EntryInfo describes one cached entry for a debug dump.
type EntryInfo struct {
	Bucket string
	ETag   string
	// Stale is true when the next Get would reload the entry.
	Stale bool
	// Negative is true when the entry says the bucket has no configuration.
	Negative bool
}

// Cache is a bounded, concurrent-safe cache of compiled bucket rule sets.
// Create one with New.
type Cache struct {
	load        Loader
	maxEntries  int
	negativeTTL time.Duration // < 0: negative entries never expire
	loadTimeout time.Duration
	backoff     time.Duration
	now         func() time.Time
	obs         Observer

	// names maps a bucket name to its slot. It is read lock-free on every
	// Get; it is only written under mu so that it always agrees with ring.
	names *index
	// arena holds the states' blocks (see arena.go).
	arena arena
	// epoch is bumped by InvalidateAll; states installed under an older
	// epoch are stale.
	epoch atomic.Uint64
	// size mirrors len(ring) so Len needs no lock.
	size atomic.Int64

	// mu guards ring, hand, every slot's idx, and writes to names. Readers
	// on the hit path never take it.
	mu   sync.Mutex
	ring []*slot // CLOCK frames, at most maxEntries
	hand int     // next frame the CLOCK sweep examines
}

// slot is the per-bucket holder. Its identity is stable for as long as the
// bucket stays in the cache; what it holds changes by swapping cur. A hit
// does not read it (it finds the state in the bucket's index cell); loads,
// writes, eviction and compaction coordinate through it.
type slot struct {
	// cur is the bucket's current immutable state (nil until the first load
	// or Set succeeds). Writers replace it under mu (and Cache.mu, through
	// install, which publishes it in the bucket's index cell too, where the
	// hit path reads it); the slow paths Load it.
	cur atomic.Pointer[state]
	// bucket is the name; it points into inline when the name fits (S3
	// names do: at most 63 bytes), so comparing it reads no other memory.
	bucket string
	inline [63]byte
	// detached is set once the slot has left the index, so a writer that found
	// it just before can retry with the bucket's new slot.
	detached atomic.Bool
	// idx is the slot's frame in Cache.ring; guarded by Cache.mu.
	idx int

	// mu serialises writers, loads and the flight hand-off for this bucket.
	mu sync.Mutex
	// gen counts Set and Invalidate calls; a load may install its result
	// only if gen did not move while it ran.
	gen    uint64
	flight *flight // the load in progress, if any
}

// state is one immutable snapshot of a bucket; a change allocates a new one,
// so the hit path can read it through one atomic pointer without locks.
//
// A state is one block of memory without pointers, carved from the
// cache's arena: this header, then the bucket's name and ETag, then, for
// a bucket with a configuration, a copy of its rule set
// (s3cors.RuleSet.CopyTo, itself a block without pointers). newState
// copies all of it from what the loader allocated apart, for two reasons:
//   - a hit reads the index cell and then the state, each a different
//     place in memory; in a server holding a million buckets each read
//     misses the CPU's caches (and its TLB), so these reads are what a
//     decision costs there. The name (which the hit compares), the ETag
//     and the rule set follow the state's header rather than living in
//     allocations of their own: misses fewer.
//   - the collector visits every state of a held bucket in every
//     collection. A block without pointers inside an arena chunk is not an
//     object of its own, and is never read by the collector, where a
//     state holding an Entry that points at the loader's rule set would be
//     three objects, one of them scanned. BenchmarkCacheMemory measures it.
type state struct {
	// ref is the CLOCK reference bit, set by hits and cleared by the
	// sweep: the one field that changes once the state is published, kept
	// in the state so that a hit writes only memory it has just read. A
	// new state inherits it from the one it replaces (install), so a write
	// or reload does not reset a bucket's age; a bucket's first state
	// starts unreferenced, its slot just placed behind the sweep's hand.
	// It and chunk share the first word, which clone does not copy.
	ref   atomic.Uint32
	chunk uint32 // the arena chunk holding the block; 0 = its own

	epoch   uint64 // Cache.epoch when the data was read or written
	expires int64  // UnixNano after which a negative entry is stale; 0 = never
	// failedAt (UnixNano) marks a stale entry whose reload failed: it is
	// served without waiting, and reloaded in the background after
	// RetryBackoff. 0 = no failed reload.
	failedAt int64
	words    uint32 // the block's length, in 8-byte words
	nameLen  uint32 // the name follows the header, then the ETag
	etagLen  uint32
	rsOff    uint32 // the rule set's byte offset in the block; 0 = none
	invalid  bool   // set by Invalidate
}

const stateSize = unsafe.Sizeof(state{})

// newState is e's state as s's, installed under epoch: a copy of e in one
// block that shares nothing with it. It is named after s, not e.Bucket: a
// hit finds a state by the name it holds, so a Loader answering with
// another spelling of the name must not make the bucket miss forever.
func (c *Cache) newState(s *slot, e *Entry, epoch uint64) *state {
	name := s.bucket
	size := stateSize + uintptr(len(name)+len(e.ETag))
	rsOff := uintptr(0)
	if e.RuleSet != nil {
		rsOff = (size + 7) &^ 7
		size = rsOff + uintptr(e.RuleSet.Size())
	}
	st := c.newBlock(size)
	st.epoch, st.expires = epoch, c.expiry(e)
	st.nameLen, st.etagLen, st.rsOff = uint32(len(name)), uint32(len(e.ETag)), uint32(rsOff)
	b := st.bytes()
	copy(b[stateSize+uintptr(copy(b[stateSize:], name)):], e.ETag)
	if e.RuleSet != nil {
		e.RuleSet.CopyTo(unsafe.Slice((*uint64)(unsafe.Pointer(st)), st.words)[rsOff/8:])
	}
	return st
}

// clone returns a copy of st, whose header the caller may change before
// publishing it. The first word (ref, which hits write concurrently, and
// chunk) is not copied: install carries the reference bit over.
func (c *Cache) clone(st *state) *state {
	next := c.newBlock(uintptr(st.words) * 8)
	copy(next.bytes()[8:], st.bytes()[8:])
	return next
}

// bytes is st's whole block.
func (st *state) bytes() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(st)), uintptr(st.words)*8)
}

// str returns the n bytes at off in st's block as a string, sharing them.
func (st *state) str(off uintptr, n uint32) string {
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(st), off)), n)
}

func (st *state) bucket() string { return st.str(stateSize, st.nameLen) }
func (st *state) etag() string   { return st.str(stateSize+uintptr(st.nameLen), st.etagLen) }

// ruleSet returns the bucket's rule set, nil for a negative entry.
func (st *state) ruleSet() *s3cors.RuleSet {
	if st.rsOff == 0 {
		return nil
	}
	return (*s3cors.RuleSet)(unsafe.Add(unsafe.Pointer(st), st.rsOff))
}

// entry returns st as an Entry, whose fields point into st.
func (st *state) entry() *Entry {
	return &Entry{Bucket: st.bucket(), RuleSet: st.ruleSet(), ETag: st.etag()}
}

// flight is one coalesced Loader call. Its result fields are written once,
// before done is closed, and read only after done is closed.
type flight struct {
	gen   uint64 // slot.gen when the load started
	epoch uint64 // Cache.epoch when the load started
	done  chan struct{}
	entry *Entry
	err   error
	stale bool // entry is a previous one, served because the load failed
}

// nopObserver lets the hot path call the observer unconditionally.
type nopObserver struct{}

func (nopObserver) Hit(bool)                      {}
func (nopObserver) Miss()                         {}
func (nopObserver) StaleServed()                  {}
func (nopObserver) Evicted(int)                   {}
func (nopObserver) Compacted(int)                 {}
func (nopObserver) LoadDone(time.Duration, error) {}

// New returns an empty cache that fills itself through load.
func New(load Loader, opts Options) *Cache {
	c := &Cache{
		load:        load,
		maxEntries:  opts.MaxEntries,
		negativeTTL: opts.NegativeTTL,
		loadTimeout: opts.LoadTimeout,
		backoff:     opts.RetryBackoff,
		now:         opts.Now,
		obs:         opts.Observer,
		names:       newIndex(),
	}
	if c.maxEntries <= 0 {
		c.maxEntries = DefaultMaxEntries
	}
	if c.negativeTTL == 0 {
		c.negativeTTL = DefaultNegativeTTL
	}
	if c.loadTimeout <= 0 {
		c.loadTimeout = DefaultLoadTimeout
	}
	if c.backoff <= 0 {
		c.backoff = DefaultRetryBackoff
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.obs == nil {
		c.obs = nopObserver{}
	}
	return c
}

// Get returns the bucket's entry, loading it when it is missing or stale.
// Concurrent loads of one bucket are coalesced into one Loader call. If that
// call fails and a previous entry exists, Get serves the previous entry
// (stale-if-error); otherwise it returns the Loader's error, wrapped. Get
// returns the context's error, wrapped, if ctx ends before the load does; the
// load itself carries on for the other callers.
func (c *Cache) Get(ctx context.Context, bucket string) (*Entry, error) {
	if st := c.hit(bucket); st != nil {
		return st.entry(), nil
	}
	return c.getSlow(ctx, bucket)
}

// Rules is Get for the decision path: the bucket's rule set (nil when it
// has no configuration) and its ETag, read on a hit from the bucket's state
// alone, one dependent load fewer than through the Entry.
func (c *Cache) Rules(ctx context.Context, bucket string) (*s3cors.RuleSet, string, error) {
	if st := c.hit(bucket); st != nil {
		return st.ruleSet(), st.etag(), nil
	}
	e, err := c.getSlow(ctx, bucket)
	if err != nil {
		return nil, "", err
	}
	return e.RuleSet, e.ETag, nil
}

// hit returns the bucket's state if it may be served without waiting for
// the store: fresh, or stale after a failed reload (stale-if-error), in
// which case it may start a background reload. Otherwise it returns nil.
func (c *Cache) hit(bucket string) *state {
	st := c.names.lookupState(bucket)
	if st == nil {
		return nil
	}
	st.touch()
	switch {
	case c.fresh(st):
		c.obs.Hit(st.rsOff == 0)
		return st
	case st.failedAt != 0:
		c.serveStale(bucket, st)
		return st
	}
	return nil
}

// serveStale counts a stale entry served because its last reload failed,
// and starts a background reload once RetryBackoff has passed since then.
func (c *Cache) serveStale(bucket string, st *state) {
	c.obs.StaleServed()
	if c.now().UnixNano()-st.failedAt < int64(c.backoff) {
		return
	}
	// A bucket evicted since has no slot to reload into; its next Get
	// loads it afresh.
	s := c.names.lookup(bucket)
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.flight == nil {
		f := &flight{gen: s.gen, epoch: c.epoch.Load(), done: make(chan struct{})}
		s.flight = f
		go c.run(context.Background(), s, f)
	}
	s.mu.Unlock()
}

// getSlow joins or starts the bucket's load and waits for it. It is kept out
// of Get so the hit path stays small enough to inline its callees.
func (c *Cache) getSlow(ctx context.Context, bucket string) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		// Starting I/O for a caller that has already gone would only add load.
		return nil, fmt.Errorf("cache: get %q: %w", bucket, err)
	}
	s := c.lockSlot(bucket)
	if st := s.cur.Load(); st != nil && c.fresh(st) {
		// Another caller's load or a Set landed while we took the lock.
		s.mu.Unlock()
		c.obs.Hit(st.rsOff == 0)
		return st.entry(), nil
	}
	epoch := c.epoch.Load()
	f := s.flight
	// A flight that started before the latest Set, Invalidate or
	// InvalidateAll may have read data older than that event, so joining it
	// could hand back exactly what the caller was told is outdated.
	if f == nil || f.gen != s.gen || f.epoch != epoch {
		f = &flight{gen: s.gen, epoch: epoch, done: make(chan struct{})}
		s.flight = f
		go c.run(ctx, s, f)
	}
	s.mu.Unlock()
	c.obs.Miss()

	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		if f.stale {
			c.obs.StaleServed()
		}
		return f.entry, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("cache: get %q: %w", bucket, ctx.Err())
	}
}

// run performs one coalesced load and publishes its result. The context keeps
// the first caller's values (trace IDs) but not its cancellation, since other
// callers may be waiting on the same load.
func (c *Cache) run(parent context.Context, s *slot, f *flight) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.loadTimeout)
	defer cancel()
	start := time.Now()
	e, err := c.callLoader(ctx, s.bucket)
	c.obs.LoadDone(time.Since(start), err)
	c.finish(s, f, e, err)
}

// callLoader calls the Loader, turning a panic or a nil result into an error
// so that every waiter gets an answer.
func (c *Cache) callLoader(ctx context.Context, bucket string) (e *Entry, err error) {
	if c.load == nil {
		return nil, errors.New("cache: New was given a nil Loader")
	}
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
	}()
	e, err = c.load(ctx, bucket)
	if err == nil && e == nil {
		err = ErrNilEntry
	}
	return e, err
}

// finish installs a load's result if nothing newer happened meanwhile, fills
// in what the flight's waiters receive, and wakes them.
func (c *Cache) finish(s *slot, f *flight, e *Entry, err error) {
	s.mu.Lock()
	cur := s.cur.Load()
	switch {
	case err != nil && cur != nil:
		// Stale-if-error. cur may even be fresh if a Set landed meanwhile,
		// in which case serving it is not stale at all.
		st := cur
		if f.stale = !c.fresh(cur); f.stale {
			st = c.clone(cur)
			st.failedAt = c.now().UnixNano()
			c.install(s, st)
		}
		f.entry = st.entry()
	case err != nil:
		f.err = fmt.Errorf("cache: load bucket %q: %w", s.bucket, err)
	case f.gen == s.gen && (cur == nil || f.epoch >= cur.epoch):
		// No Set or Invalidate since the load started, and no load that
		// started after an InvalidateAll has already installed newer data.
		// Waiters get the cached copy, so the loader's objects are
		// garbage at once and every caller sees one entry.
		st := c.newState(s, e, f.epoch)
		c.install(s, st)
		f.entry = st.entry()
	case cur != nil && c.fresh(cur):
		// Superseded by a Set (or a later load): hand waiters the newer
		// entry so a caller never sees state older than the cache holds.
		f.entry = cur.entry()
	default:
		// Superseded by an invalidation: the waiters asked before it, so
		// what was read is a valid answer for them, but it is not cached.
		f.entry = e
	}
	if s.flight == f {
		s.flight = nil
	}
	if s.cur.Load() == nil && s.flight == nil {
		// A cold bucket whose load failed: drop the placeholder so failing
		// lookups do not occupy (and evict) real entries.
		c.detach(s)
	}
	s.mu.Unlock()
	close(f.done)
}

// Set installs e as its bucket's entry, e.g. after a local write so the
// writing replica is consistent at once. It bumps the bucket's generation, so
// a load already in flight cannot overwrite e with what it read before the
// write. A nil e is ignored.
func (c *Cache) Set(e *Entry) {
	if e == nil {
		return
	}
	s := c.lockSlot(e.Bucket)
	s.gen++
	c.install(s, c.newState(s, e, c.epoch.Load()))
	s.mu.Unlock()
}

// Invalidate marks one bucket stale: the next Get reloads it, serving the old
// entry only if that reload fails. A load already in flight is not allowed
// to install its result, since it may have read the store before the change
// that caused this call.
func (c *Cache) Invalidate(bucket string) {
	s := c.names.lookup(bucket)
	if s == nil {
		// Nothing cached and no load in flight (loads live in slots): the
		// next Get reads the store afresh anyway.
		return
	}
	s.mu.Lock()
	s.gen++
	if cur := s.cur.Load(); cur != nil && !cur.invalid {
		next := c.clone(cur)
		next.invalid = true
		next.failedAt = 0 // a change was announced: the store is reachable, wait for it
		c.install(s, next)
	}
	s.mu.Unlock()
}

// InvalidateAll marks every entry stale, e.g. after a pub/sub resubscription
// or a watcher overflow, when some invalidations may have been missed. It is
// O(1): it bumps the cache epoch, and each entry reloads on its next Get.
func (c *Cache) InvalidateAll() {
	c.epoch.Add(1)
}

// Buckets returns the cached bucket names, sorted. It includes buckets whose
// first load is still in flight.
func (c *Cache) Buckets() []string {
	c.mu.Lock()
	names := make([]string, len(c.ring))
	for i, s := range c.ring {
		names[i] = s.bucket
	}
	c.mu.Unlock()
	slices.Sort(names)
	return names
}

// Len returns the number of cached buckets, including buckets whose first
// load is still in flight. It never exceeds MaxEntries.
func (c *Cache) Len() int {
	return int(c.size.Load())
}

// Snapshot describes every entry that holds data, sorted by bucket, for a
// debug endpoint.
func (c *Cache) Snapshot() []EntryInfo {
	out := c.Entries()
	slices.SortFunc(out, func(a, b EntryInfo) int { return cmp.Compare(a.Bucket, b.Bucket) })
	return out
}

// Entries is Snapshot in no particular order, for callers that do not need
// one (sorting a million names takes the better part of a second).
func (c *Cache) Entries() []EntryInfo {
	c.mu.Lock()
	slots := slices.Clone(c.ring)
	c.mu.Unlock()
	out := make([]EntryInfo, 0, len(slots))
	for _, s := range slots {
		st := s.cur.Load()
		if st == nil {
			continue
		}
		out = append(out, EntryInfo{
			Bucket:   s.bucket,
			ETag:     st.etag(),
			Stale:    !c.fresh(st),
			Negative: st.rsOff == 0,
		})
	}
	return out
}

// fresh reports whether st may be served without a reload.
func (c *Cache) fresh(st *state) bool {
	if st.invalid || st.epoch != c.epoch.Load() {
		return false
	}
	// Only negative entries carry an expiry, so positive hits skip the clock.
	return st.expires == 0 || c.now().UnixNano() < st.expires
}

// expiry returns the state expiry for e: negative entries are trusted for
// NegativeTTL because nothing invalidates a bucket that another replica
// creates before this one hears about it.
func (c *Cache) expiry(e *Entry) int64 {
	if e.RuleSet != nil || c.negativeTTL < 0 {
		return 0
	}
	return c.now().Add(c.negativeTTL).UnixNano()
}

// touch sets the CLOCK reference bit. Loading first keeps a hot entry's
// cache line shared between cores instead of bouncing on every hit.
func (st *state) touch() {
	if st.ref.Load() == 0 {
		st.ref.Store(1)
	}
}

// referenced reports and clears s's CLOCK reference bit (a slot whose
// first load is running has none).
func (s *slot) referenced() bool {
	st := s.cur.Load()
	if st == nil || st.ref.Load() == 0 {
		return false
	}
	st.ref.Store(0)
	return true
}

// newSlot returns an empty slot for bucket. The slot keeps its own copy of
// the name: the caller's may point into a request's frame (decision
// requests are decoded without copying their strings), which the transport
// reuses once the call ends.
func newSlot(bucket string) *slot {
	s := &slot{}
	if n := copy(s.inline[:], bucket); n == len(bucket) && n > 0 {
		// The string points into the slot itself; slots are never copied
		// (they hold a mutex), so it stays valid for the slot's life.
		s.bucket = unsafe.String(&s.inline[0], n)
	} else {
		s.bucket = strings.Clone(bucket)
	}
	return s
}

// lockSlot returns the bucket's live slot with its mu held, creating the slot
// if needed. It retries when the slot it found was detached (evicted) before
// the lock was taken, so that writes land in the slot later Gets will read.
func (c *Cache) lockSlot(bucket string) *slot {
	for {
		s := c.slotFor(bucket)
		s.mu.Lock()
		if !s.detached.Load() {
			return s
		}
		s.mu.Unlock()
	}
}

// slotFor returns the bucket's slot, inserting an empty one (and evicting to
// make room) if there is none.
func (c *Cache) slotFor(bucket string) *slot {
	if s := c.names.lookup(bucket); s != nil {
		return s
	}
	c.mu.Lock()
	if s := c.names.lookup(bucket); s != nil {
		c.mu.Unlock()
		return s
	}
	s := newSlot(bucket)
	evicted := c.insertLocked(s)
	c.names.insert(s)
	c.size.Store(int64(len(c.ring)))
	c.mu.Unlock()
	if evicted > 0 {
		// Outside the lock: an observer must never stall inserts.
		c.obs.Evicted(evicted)
	}
	return s
}
