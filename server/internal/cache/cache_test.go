package cache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/corsd/corsd/server/internal/s3cors"
)

func TestHitAfterLoadCallsLoaderOnce(t *testing.T) {
	store := newFakeStore(t)
	store.put("b", `"v1"`)
	rec := &recorder{}
	c := New(store.load, Options{Observer: rec})

	first := mustGet(t, c, "b")
	for range 5 {
		if got := mustGet(t, c, "b"); !sameEntry(got, first) {
			t.Fatalf("hit returned %+v, want the loaded entry %+v", got, first)
		}
	}
	if n := store.callsFor("b"); n != 1 {
		t.Fatalf("loader calls = %d, want 1", n)
	}
	if rec.misses.Load() != 1 || rec.hits.Load() != 5 || rec.loads.Load() != 1 {
		t.Fatalf("misses/hits/loads = %d/%d/%d, want 1/5/1", rec.misses.Load(), rec.hits.Load(), rec.loads.Load())
	}
	if first.ETag != `"v1"` || first.RuleSet == nil {
		t.Fatalf("entry = %+v, want the stored configuration", first)
	}
}

// The decision path hands Get names that point into a request's frame,
// which the transport may reuse once the call ends: the cache keeps a copy,
// so a reused frame neither renames a cached bucket nor is kept alive by it.
func TestGetKeepsItsOwnCopyOfTheBucketName(t *testing.T) {
	store := newFakeStore(t)
	store.put("photos", `"v1"`)
	c := New(store.load, Options{})
	frame := []byte("photos")
	mustGet(t, c, unsafe.String(&frame[0], len(frame)))
	copy(frame, "videos")
	if got := c.Buckets(); !slices.Equal(got, []string{"photos"}) {
		t.Fatalf("Buckets() = %q after the caller's buffer changed, want [photos]", got)
	}
	if e := mustGet(t, c, "photos"); e.ETag != `"v1"` || store.callsFor("photos") != 1 {
		t.Fatalf("photos after the caller's buffer changed: %+v, %d loads; want a hit on v1", e, store.callsFor("photos"))
	}
}

func TestSetInstallsEntryWithoutLoading(t *testing.T) {
	store := newFakeStore(t)
	c := New(store.load, Options{})
	want := &Entry{Bucket: "b", RuleSet: store.rs, ETag: `"local"`}
	c.Set(want)
	c.Set(nil) // ignored, must not disturb anything

	if got := mustGet(t, c, "b"); !sameEntry(got, want) {
		t.Fatalf("Get = %+v, want the entry given to Set", got)
	}
	if n := store.callsFor("b"); n != 0 {
		t.Fatalf("loader calls = %d, want 0", n)
	}
}

func TestNegativeEntryIsCachedUntilNegativeTTL(t *testing.T) {
	tests := []struct {
		name       string
		ttl        time.Duration
		advance    time.Duration
		wantReload bool
	}{
		{name: "trusted just before the ttl", ttl: 10 * time.Second, advance: 10*time.Second - time.Nanosecond},
		{name: "reloaded at the ttl", ttl: 10 * time.Second, advance: 10 * time.Second, wantReload: true},
		{name: "zero ttl means the 30s default", ttl: 0, advance: 29 * time.Second},
		{name: "zero ttl reloads after 30s", ttl: 0, advance: DefaultNegativeTTL, wantReload: true},
		{name: "negative ttl trusts forever", ttl: -1, advance: 10_000 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(t)
			clock := newFakeClock()
			rec := &recorder{}
			c := New(store.load, Options{NegativeTTL: tt.ttl, Now: clock.Now, Observer: rec})

			if e := mustGet(t, c, "none"); e.RuleSet != nil {
				t.Fatalf("first Get = %+v, want a negative entry", e)
			}
			mustGet(t, c, "none")
			if n := store.callsFor("none"); n != 1 {
				t.Fatalf("loader calls before expiry = %d, want 1 (negative entry cached)", n)
			}
			if rec.negHits.Load() != 1 {
				t.Fatalf("negative hits = %d, want 1", rec.negHits.Load())
			}

			clock.Advance(tt.advance)
			mustGet(t, c, "none")
			want := 1
			if tt.wantReload {
				want = 2
			}
			if n := store.callsFor("none"); n != want {
				t.Fatalf("loader calls after %v = %d, want %d", tt.advance, n, want)
			}
		})
	}
}

func TestPositiveEntryDoesNotExpireWithTime(t *testing.T) {
	store := newFakeStore(t)
	store.put("b", `"v1"`)
	clock := newFakeClock()
	c := New(store.load, Options{NegativeTTL: time.Second, Now: clock.Now})

	mustGet(t, c, "b")
	clock.Advance(1000 * time.Hour)
	mustGet(t, c, "b")
	if n := store.callsFor("b"); n != 1 {
		t.Fatalf("loader calls = %d, want 1: only writes make positive entries stale", n)
	}
}

func TestConcurrentColdGetsShareOneLoad(t *testing.T) {
	const goroutines = 1000
	rs := ruleSet(t)
	g := newGate(func(b string) (*Entry, error) { return &Entry{Bucket: b, RuleSet: rs, ETag: `"v1"`}, nil })
	rec := &recorder{}
	c := New(g.load, Options{Observer: rec})

	var calling atomic.Int64
	var wg sync.WaitGroup
	results := make([]result, goroutines)
	for i := range goroutines {
		wg.Go(func() {
			calling.Add(1)
			e, err := c.Get(context.Background(), "cold")
			results[i] = result{e, err}
		})
	}
	eventually(t, "every goroutine to call Get", func() bool { return calling.Load() == goroutines })
	// Every Get on the slow path reports Miss just before waiting, so once
	// all have, every goroutine is waiting on the one in-flight load.
	eventually(t, "every Get to wait for the load", func() bool { return rec.misses.Load() == goroutines })
	close(g.release)
	wg.Wait()

	if n := g.calls.Load(); n != 1 {
		t.Fatalf("loader calls = %d, want 1", n)
	}
	first := results[0].e
	for i, r := range results {
		if r.err != nil || r.e != first || r.e == nil {
			t.Fatalf("goroutine %d got (%p, %v), want the shared entry %p", i, r.e, r.err, first)
		}
	}
}

func TestCancelledWaiterReturnsWhileLoadCompletesForOthers(t *testing.T) {
	g := newGate(func(b string) (*Entry, error) { return &Entry{Bucket: b}, nil })
	c := New(g.load, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	leaver := goGet(ctx, c, "b") // starts the load: its ctx is the parent
	recv(t, "the load to start", g.started)
	stayer := goGet(context.Background(), c, "b")

	cancel()
	r := recv(t, "the cancelled waiter", leaver)
	if !errors.Is(r.err, context.Canceled) || r.e != nil {
		t.Fatalf("cancelled waiter got (%v, %v), want context.Canceled", r.e, r.err)
	}
	select {
	case r := <-stayer:
		t.Fatalf("remaining waiter returned %+v before the load finished", r)
	default:
	}

	close(g.release)
	if err := recv(t, "the load's context state", g.ctxErr); err != nil {
		t.Fatalf("load context ended with %v: one caller's cancellation reached the shared load", err)
	}
	r = recv(t, "the remaining waiter", stayer)
	if r.err != nil || r.e == nil || r.e.Bucket != "b" {
		t.Fatalf("remaining waiter got (%+v, %v), want the loaded entry", r.e, r.err)
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("loader calls = %d, want 1", n)
	}
}

func TestGetWithEndedContextDoesNotLoad(t *testing.T) {
	store := newFakeStore(t)
	c := New(store.load, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if _, err := c.Get(ctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get error = %v, want context.Canceled", err)
	}
	// A started load would have created the bucket's slot synchronously,
	// before Get returned; the loader itself runs later, so counting its
	// calls here could not tell.
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0: a load was started for a caller that already left", n)
	}
}

func TestLoadTimeoutBoundsTheDetachedLoad(t *testing.T) {
	hung := func(ctx context.Context, _ string) (*Entry, error) {
		<-ctx.Done() // a store that never answers
		return nil, ctx.Err()
	}
	c := New(hung, Options{LoadTimeout: 20 * time.Millisecond})

	r := recv(t, "Get to return once the load times out", goGet(context.Background(), c, "b"))
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Get error = %v, want the load to end with context.DeadlineExceeded", r.err)
	}
}

func TestReloadFailureServesStaleEntry(t *testing.T) {
	tests := []struct {
		name   string
		etag   string // "" = negative entry
		expire func(c *Cache, clock *fakeClock)
	}{
		{name: "invalidated positive entry", etag: `"v1"`, expire: func(c *Cache, _ *fakeClock) { c.Invalidate("b") }},
		{name: "positive entry after InvalidateAll", etag: `"v1"`, expire: func(c *Cache, _ *fakeClock) { c.InvalidateAll() }},
		{name: "expired negative entry", expire: func(_ *Cache, clock *fakeClock) { clock.Advance(time.Hour) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(t)
			if tt.etag != "" {
				store.put("b", tt.etag)
			}
			clock := newFakeClock()
			rec := &recorder{}
			c := New(store.load, Options{Now: clock.Now, Observer: rec})
			old := mustGet(t, c, "b")

			tt.expire(c, clock)
			errDown := errors.New("store down")
			store.fail(errDown)
			got := mustGet(t, c, "b")
			if !sameEntry(got, old) {
				t.Fatalf("Get after failed reload = %+v, want the previous entry %+v", got, old)
			}
			if n := rec.stale.Load(); n != 1 {
				t.Fatalf("StaleServed = %d, want 1", n)
			}
			if n := rec.loadErrs.Load(); n != 1 {
				t.Fatalf("LoadDone errors = %d, want 1", n)
			}

			// Within RetryBackoff the stale entry is served at once, without
			// asking the store again: an outage adds no latency.
			calls := store.callsFor("b")
			for range 10 {
				if got := mustGet(t, c, "b"); !sameEntry(got, old) {
					t.Fatalf("Get within the backoff = %+v, want the previous entry", got)
				}
			}
			if n := store.callsFor("b"); n != calls {
				t.Fatalf("%d loads within the backoff, want none", n-calls)
			}
			if n := rec.stale.Load(); n != 11 {
				t.Fatalf("StaleServed = %d, want 11", n)
			}

			// The entry stays stale, so once the store recovers a Get after
			// the backoff starts one background reload (still answering at
			// once) and the reloaded entry is served from then on.
			store.fail(nil)
			store.put("b", `"v2"`)
			clock.Advance(DefaultRetryBackoff)
			if got := mustGet(t, c, "b"); !sameEntry(got, old) {
				t.Fatalf("Get that starts the background reload = %+v, want the previous entry at once", got)
			}
			eventually(t, "background reload", func() bool { return mustGet(t, c, "b").ETag == `"v2"` })
			if n := store.callsFor("b"); n != calls+1 {
				t.Fatalf("%d background loads, want 1", n-calls)
			}
		})
	}
}

func TestColdLoadFailureReturnsWrappedError(t *testing.T) {
	errDown := errors.New("store down")
	tests := []struct {
		name   string
		loader Loader
		want   error
	}{
		{
			name:   "loader error",
			loader: func(context.Context, string) (*Entry, error) { return nil, fmt.Errorf("redis: %w", errDown) },
			want:   errDown,
		},
		{
			name:   "nil entry without error",
			loader: func(context.Context, string) (*Entry, error) { return nil, nil },
			want:   ErrNilEntry,
		},
		{
			name:   "loader panic",
			loader: func(context.Context, string) (*Entry, error) { panic("boom") },
			want:   ErrLoaderPanic,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			c := New(tt.loader, Options{Observer: rec})
			e, err := c.Get(context.Background(), "b")
			if !errors.Is(err, tt.want) || e != nil {
				t.Fatalf("Get = (%v, %v), want an error wrapping %v", e, err, tt.want)
			}
			if rec.stale.Load() != 0 {
				t.Fatalf("StaleServed = %d with nothing to serve", rec.stale.Load())
			}
			// A failed cold load must not leave a placeholder occupying a slot.
			if n := c.Len(); n != 0 {
				t.Fatalf("Len after failed cold load = %d, want 0", n)
			}
		})
	}
}

func TestSetDuringInFlightLoadIsNotOverwritten(t *testing.T) {
	rs := ruleSet(t)
	g := newGate(func(b string) (*Entry, error) { return &Entry{Bucket: b, RuleSet: rs, ETag: `"old"`}, nil })
	c := New(g.load, Options{})

	waiter := goGet(context.Background(), c, "b")
	recv(t, "the load to start", g.started)
	newer := &Entry{Bucket: "b", RuleSet: rs, ETag: `"new"`}
	c.Set(newer)
	close(g.release)

	// The waiter asked before the Set but is answered after it; it gets the
	// newer entry rather than state older than what the cache holds.
	if r := recv(t, "the waiter", waiter); r.err != nil || r.e == nil || !sameEntry(r.e, newer) {
		t.Fatalf("waiter got (%+v, %v), want the entry from Set", r.e, r.err)
	}
	if got := mustGet(t, c, "b"); !sameEntry(got, newer) {
		t.Fatalf("Get after the load finished = %+v, want the entry from Set", got)
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("loader calls = %d, want 1 (the Set entry is fresh)", n)
	}
}

func TestInvalidateDuringInFlightLoadDiscardsItsResult(t *testing.T) {
	var version atomic.Int64
	g := newGate(func(b string) (*Entry, error) {
		return &Entry{Bucket: b, ETag: fmt.Sprint(version.Load())}, nil
	})
	c := New(g.load, Options{})

	waiter := goGet(context.Background(), c, "b")
	recv(t, "the first load to start", g.started) // reads version 0
	version.Store(1)
	c.Invalidate("b") // the store changed after that read
	g.release <- struct{}{}
	if r := recv(t, "the waiter", waiter); r.err != nil || r.e.ETag != "0" {
		t.Fatalf("waiter got (%+v, %v), want the version it asked for", r.e, r.err)
	}

	// The pre-invalidation read must not be cached: the next Get reloads.
	next := goGet(context.Background(), c, "b")
	recv(t, "the second load to start", g.started)
	g.release <- struct{}{}
	if r := recv(t, "the second Get", next); r.err != nil || r.e.ETag != "1" {
		t.Fatalf("Get after Invalidate got (%+v, %v), want version 1", r.e, r.err)
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("loader calls = %d, want 2", n)
	}
}

func TestOlderLoadFinishingLastDoesNotOverwriteNewerLoad(t *testing.T) {
	// Each call gets its own release channel, so the test picks the order in
	// which the two loads finish.
	type call struct {
		etag    string
		release chan struct{}
	}
	var version atomic.Int64
	calls := make(chan *call, 2)
	load := func(_ context.Context, b string) (*Entry, error) {
		cl := &call{etag: fmt.Sprint(version.Load()), release: make(chan struct{})}
		calls <- cl
		<-cl.release
		return &Entry{Bucket: b, ETag: cl.etag}, nil
	}
	c := New(load, Options{})

	early := goGet(context.Background(), c, "b")
	older := recv(t, "the first load to start", calls)
	version.Store(1) // the store changes, then the cache hears about it
	c.InvalidateAll()
	late := goGet(context.Background(), c, "b")
	// The late caller must not join the load that read version 0.
	newer := recv(t, "a second load for the caller that came after the invalidation", calls)

	close(newer.release)
	if r := recv(t, "the late Get", late); r.err != nil || r.e.ETag != "1" {
		t.Fatalf("late Get got (%+v, %v), want version 1 from its own load", r.e, r.err)
	}
	close(older.release)
	recv(t, "the early Get", early)
	// Inspect without Get, which would start (and block on) another load.
	want := []EntryInfo{{Bucket: "b", ETag: "1", Negative: true}}
	if got := c.Snapshot(); !slices.Equal(got, want) {
		t.Fatalf("cached = %+v, want %+v: the older load finished last and overwrote the newer one", got, want)
	}
}

func TestInvalidateAllReloadsEveryBucket(t *testing.T) {
	store := newFakeStore(t)
	buckets := []string{"a", "b", "c", "negative"}
	for _, b := range buckets[:3] {
		store.put(b, `"v1"`)
	}
	c := New(store.load, Options{})
	for _, b := range buckets {
		mustGet(t, c, b)
	}
	c.Set(&Entry{Bucket: "set", RuleSet: store.rs})
	buckets = append(buckets, "set")

	c.InvalidateAll()
	for _, info := range c.Snapshot() {
		if !info.Stale {
			t.Fatalf("%s not stale after InvalidateAll", info.Bucket)
		}
	}
	for _, b := range buckets {
		mustGet(t, c, b)
		mustGet(t, c, b)
	}
	for _, b := range buckets {
		want := 2
		if b == "set" {
			want = 1 // never loaded before, reloaded once now
		}
		if n := store.callsFor(b); n != want {
			t.Fatalf("loader calls for %s = %d, want %d", b, n, want)
		}
	}
}

func TestInvalidateMarksOnlyThatBucketStale(t *testing.T) {
	store := newFakeStore(t)
	store.put("a", `"v1"`)
	store.put("b", `"v1"`)
	c := New(store.load, Options{})
	mustGet(t, c, "a")
	mustGet(t, c, "b")
	c.Invalidate("missing") // no entry: a no-op

	c.Invalidate("a")
	store.put("a", `"v2"`)
	if got := mustGet(t, c, "a"); got.ETag != `"v2"` {
		t.Fatalf("Get(a) after Invalidate = %+v, want v2", got)
	}
	mustGet(t, c, "b")
	if na, nb := store.callsFor("a"), store.callsFor("b"); na != 2 || nb != 1 {
		t.Fatalf("loader calls a/b = %d/%d, want 2/1", na, nb)
	}
}

func TestEvictionKeepsLenWithinMaxEntries(t *testing.T) {
	store := newFakeStore(t)
	rec := &recorder{}
	c := New(store.load, Options{MaxEntries: 100, Observer: rec})

	for i := range 1000 {
		mustGet(t, c, fmt.Sprintf("bucket-%04d", i))
		if n := c.Len(); n > 100 {
			t.Fatalf("Len after %d inserts = %d, want <= 100", i+1, n)
		}
	}
	if n := c.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100", n)
	}
	if n := len(c.Buckets()); n != 100 {
		t.Fatalf("len(Buckets) = %d, want 100", n)
	}
	if n := rec.evicted.Load(); n != 900 {
		t.Fatalf("Evicted total = %d, want 900", n)
	}
}

func TestEvictionSparesRecentlyHitBucket(t *testing.T) {
	store := newFakeStore(t)
	store.put("hot", `"v1"`)
	c := New(store.load, Options{MaxEntries: 100})
	mustGet(t, c, "hot")

	for i := range 1000 {
		mustGet(t, c, fmt.Sprintf("cold-%04d", i))
		mustGet(t, c, "hot")
	}
	if !slices.Contains(c.Buckets(), "hot") {
		t.Fatalf("hot bucket evicted despite a hit between every insert")
	}
	if n := store.callsFor("hot"); n != 1 {
		t.Fatalf("loader calls for hot = %d, want 1 (never evicted, never reloaded)", n)
	}
	// Control: untouched buckets do get evicted, so the check above is not
	// vacuous.
	if slices.Contains(c.Buckets(), "cold-0000") {
		t.Fatalf("the first untouched bucket survived 900 evictions")
	}
}

func TestEvictedBucketIsReadFromTheStoreAgain(t *testing.T) {
	// An evicted bucket hears of no change (Invalidate of a bucket not
	// cached does nothing), so its next Get must read the store, not find
	// the state it had in the index cell it left.
	store := newFakeStore(t)
	store.put("a", `"v1"`)
	c := New(store.load, Options{MaxEntries: 4})
	mustGet(t, c, "a")
	for _, b := range []string{"b", "c", "d", "e"} {
		mustGet(t, c, b)
	}
	if slices.Contains(c.Buckets(), "a") {
		t.Fatalf("a still cached; the test needs it evicted")
	}
	store.put("a", `"v2"`)
	c.Invalidate("a")
	if got := mustGet(t, c, "a"); got.ETag != `"v2"` {
		t.Fatalf("Get(a) after its eviction = %s, want the store's v2", got.ETag)
	}
	if n := store.callsFor("a"); n != 2 {
		t.Fatalf("loader calls for a = %d, want 2", n)
	}
}

func TestLoaderNamingTheBucketOtherwiseStillHits(t *testing.T) {
	// A hit finds a bucket's state by the name the state holds; a Loader
	// that answers with another spelling must not make every Get miss it.
	var calls atomic.Int64
	c := New(func(_ context.Context, bucket string) (*Entry, error) {
		calls.Add(1)
		return &Entry{Bucket: strings.ToUpper(bucket)}, nil
	}, Options{})
	for range 3 {
		e := mustGet(t, c, "lower")
		if e.Bucket != "lower" {
			t.Fatalf("Get(lower).Bucket = %q, want the name asked for", e.Bucket)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("loader calls = %d, want 1", n)
	}
	// Only the lock-free hit answers Rules without allocating; the locked
	// path that would also find the state builds an Entry.
	ctx := context.Background()
	if a := testing.AllocsPerRun(100, func() { _, _, _ = c.Rules(ctx, "lower") }); a != 0 {
		t.Fatalf("Rules(lower) allocates %v times: not answered by the lock-free hit", a)
	}
}

func TestWritesRacingIndexGrowthAreAllVisible(t *testing.T) {
	// A hit reads a bucket's state from its index cell. Writers publish it
	// there while other goroutines insert buckets that make the index
	// rebuild itself; a write published into a table a rebuild had
	// already copied would be lost, and the bucket would answer with an
	// older state for as long as it stays cached.
	for round := range 20 {
		c := New(nil, Options{MaxEntries: 100_000})
		rs := ruleSet(t)
		const writers, buckets = 4, 64
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for v := range 20 {
					for i := range buckets {
						b := fmt.Sprintf("w%d-b%d", w, i)
						c.Set(&Entry{Bucket: b, RuleSet: rs, ETag: fmt.Sprintf(`"v%d"`, v)})
					}
				}
			})
		}
		wg.Go(func() {
			for i := range 4000 {
				c.Set(&Entry{Bucket: fmt.Sprintf("grow-%d-%d", round, i)})
			}
		})
		wg.Wait()
		for w := range writers {
			for i := range buckets {
				b := fmt.Sprintf("w%d-b%d", w, i)
				if _, etag, err := c.Rules(context.Background(), b); err != nil || etag != `"v19"` {
					t.Fatalf("round %d: Rules(%s) = %s, %v; want the last write, v19", round, b, etag, err)
				}
			}
		}
	}
}

func TestSnapshotReportsEveryEntrySortedWithState(t *testing.T) {
	store := newFakeStore(t)
	store.put("c-pos", `"v1"`)
	store.put("a-stale", `"v1"`)
	c := New(store.load, Options{})
	for _, b := range []string{"c-pos", "b-neg", "a-stale"} {
		mustGet(t, c, b)
	}
	c.Invalidate("a-stale")

	want := []EntryInfo{
		{Bucket: "a-stale", ETag: `"v1"`, Stale: true},
		{Bucket: "b-neg", Negative: true},
		{Bucket: "c-pos", ETag: `"v1"`},
	}
	if got := c.Snapshot(); !slices.Equal(got, want) {
		t.Fatalf("Snapshot = %+v, want %+v", got, want)
	}
	if got := c.Buckets(); !slices.Equal(got, []string{"a-stale", "b-neg", "c-pos"}) {
		t.Fatalf("Buckets = %v", got)
	}
}

// Rules, the decision path's Get, answers what Get answers in every state
// an entry can be in: loaded cold, hit, negative, stale after a failed
// reload (first through the load, then from the state alone), and a cold
// bucket whose load fails.
func TestRulesAnswersWhatGetAnswers(t *testing.T) {
	store := newFakeStore(t)
	store.put("b", `"v1"`)
	rec := &recorder{}
	c := New(store.load, Options{Observer: rec})
	ctx := context.Background()
	check := func(step, bucket string, wantRules bool, wantETag string, wantErr bool) {
		t.Helper()
		rs, etag, err := c.Rules(ctx, bucket)
		if (err != nil) != wantErr || (rs != nil) != wantRules || etag != wantETag {
			t.Fatalf("%s: Rules(%q) = %v, %q, %v; want rules %v, %q, error %v", step, bucket, rs != nil, etag, err, wantRules, wantETag, wantErr)
		}
		if err != nil {
			return
		}
		e := mustGet(t, c, bucket)
		if e.RuleSet != rs || e.ETag != etag {
			t.Fatalf("%s: Rules(%q) = %p %q, Get = %p %q", step, bucket, rs, etag, e.RuleSet, e.ETag)
		}
	}
	check("cold", "b", true, `"v1"`, false)
	check("hit", "b", true, `"v1"`, false)
	check("negative", "none", false, "", false)
	store.fail(errors.New("store down"))
	c.Invalidate("b")
	check("stale through the failed load", "b", true, `"v1"`, false)
	check("stale from the state", "b", true, `"v1"`, false)
	if rec.stale.Load() < 2 {
		t.Fatalf("stale served %d times, want at least 2", rec.stale.Load())
	}
	check("cold while the store is down", "other", false, "", true)
	if n := store.callsFor("b"); n != 2 {
		t.Fatalf("loads of b = %d, want 2 (cold, and the failed reload)", n)
	}
}

func TestRulesHitDoesNotAllocate(t *testing.T) {
	store := newFakeStore(t)
	store.put("b", `"v1"`)
	c := New(store.load, Options{Observer: &recorder{}})
	mustGet(t, c, "b")
	mustGet(t, c, "negative")
	ctx := context.Background()

	for _, bucket := range []string{"b", "negative"} {
		allocs := testing.AllocsPerRun(1000, func() {
			if _, _, err := c.Rules(ctx, bucket); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("Rules hit on %s allocates %v times, want 0", bucket, allocs)
		}
	}
}

// TestConcurrentMixedUseIsRaceFree exercises every operation at once under
// -race, with eviction pressure, and checks the invariants still hold.
func TestConcurrentMixedUseIsRaceFree(t *testing.T) {
	store := newFakeStore(t)
	for i := range 50 {
		store.put(fmt.Sprintf("b%d", i), `"v1"`)
	}
	c := New(store.load, Options{MaxEntries: 32})
	ctx := context.Background()

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				b := fmt.Sprintf("b%d", (i*7+w)%64)
				switch i % 10 {
				case 0:
					c.Invalidate(b)
				case 1:
					c.Set(&Entry{Bucket: b, RuleSet: store.rs, ETag: `"set"`})
				case 2:
					if w == 0 {
						c.InvalidateAll()
					}
					_ = c.Snapshot()
				default:
					if e, err := c.Get(ctx, b); err != nil || e.Bucket != b {
						t.Errorf("Get(%s) = (%+v, %v)", b, e, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 32 {
		t.Fatalf("Len = %d, want <= 32", n)
	}
	if n := len(c.Snapshot()); n > 32 {
		t.Fatalf("Snapshot has %d entries, want <= 32", n)
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	c := New(newFakeStore(t).load, Options{})
	if c.maxEntries != DefaultMaxEntries || c.negativeTTL != DefaultNegativeTTL || c.loadTimeout != DefaultLoadTimeout {
		t.Fatalf("defaults = %d/%v/%v, want %d/%v/%v", c.maxEntries, c.negativeTTL, c.loadTimeout,
			DefaultMaxEntries, DefaultNegativeTTL, DefaultLoadTimeout)
	}
	if c.now == nil || c.obs == nil {
		t.Fatal("Now or Observer left nil")
	}
}

// TestCachedEntryIsACopyInOneAllocation checks what the state's layout
// promises: the entry a Get returns equals the one given, but its name,
// ETag and rule set live in the state's own block (so a hit reads no
// object the loader allocated apart, and the collector marks one object
// without pointers per bucket), its rule set decides as the original
// does, and names and ETags of any length are kept.
func TestCachedEntryIsACopyInOneAllocation(t *testing.T) {
	cfg, _, err := s3cors.DecodeJSON([]byte(`{"CORSRules":[{"ID":"one","AllowedOrigins":["https://a.example"],"AllowedMethods":["PUT"],"AllowedHeaders":["x-*"],"ExposeHeaders":["ETag"],"MaxAgeSeconds":60}]}`))
	if err != nil {
		t.Fatal(err)
	}
	rs := s3cors.Compile(cfg, s3cors.Options{})
	long := strings.Repeat("e", 200)
	tests := []struct {
		name, bucket, etag string
		rs                 *s3cors.RuleSet
	}{
		{"positive", "photos", `"0123456789abcdef0123456789abcdef"`, rs},
		{"negative", "none", "", nil},
		{"long ETag", "big", long, rs},
		{"odd lengths", "abc", `"x"`, rs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(nil, Options{})
			given := &Entry{Bucket: strings.Clone(tt.bucket), RuleSet: tt.rs, ETag: strings.Clone(tt.etag)}
			c.Set(given)
			got := mustGet(t, c, tt.bucket)
			if !sameEntry(got, given) {
				t.Fatalf("Get = %+v, want an entry equal to %+v", got, given)
			}
			st := c.names.lookup(tt.bucket).cur.Load()
			lo := uintptr(unsafe.Pointer(st))
			hi := lo + uintptr(st.words)*8
			within := func(p unsafe.Pointer, n int) bool {
				return uintptr(p) >= lo && uintptr(p)+uintptr(n) <= hi
			}
			if !within(unsafe.Pointer(unsafe.StringData(got.Bucket)), len(got.Bucket)) || (tt.etag != "" && !within(unsafe.Pointer(unsafe.StringData(got.ETag)), len(got.ETag))) {
				t.Fatal("name or ETag not copied into the state's block")
			}
			if tt.rs == nil {
				if got.RuleSet != nil {
					t.Fatal("negative entry has a rule set")
				}
				return
			}
			if got.RuleSet == tt.rs || !within(unsafe.Pointer(got.RuleSet), got.RuleSet.Size()) {
				t.Fatal("the rule set is not the state's own copy")
			}
			for _, req := range []s3cors.Request{
				{Method: "OPTIONS", Origin: "https://a.example", AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "x-y", Key: "k"},
				{Method: "OPTIONS", Origin: "https://b.example", AccessControlRequestMethod: "PUT", Key: "k"},
				{Method: "GET", Origin: "https://a.example", Key: "k"},
			} {
				var want, have s3cors.Result
				s3cors.Evaluate(tt.rs, &req, &want)
				s3cors.Evaluate(got.RuleSet, &req, &have)
				if !reflect.DeepEqual(want, have) {
					t.Fatalf("%s from %s: the copy decides %+v, the original %+v", req.Method, req.Origin, have, want)
				}
			}
		})
	}
}
